[method smc]
energy = margin
particles = 64
temperature = 3.0, 5.0
moves = 4, 8
tilt_max = 1.0
ess = 0.5
