[method smc]
energy = margin
particles = 64, 128
temperature = 0.1, 0.3, 1.0
moves = 2
tilt_max = 1.0
ess = 0.5
