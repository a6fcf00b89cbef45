[method itgis]
temperature = 0.2, 0.3, 0.45
score = logprob
decay = 0.9, 0.97
batch = 64
