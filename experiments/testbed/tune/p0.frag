[method itgis]
temperature = 0.3
score = logprob
decay = 0.9
batch = 64
