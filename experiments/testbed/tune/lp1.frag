[method itgis]
temperature = 0.3, 0.45, 0.67, 1.0
score = logit, logprob
batch = 64
