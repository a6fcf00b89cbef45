[method smc]
energy = margin
particles = 64
temperature = 1.0, 2.0
moves = 2, 4
tilt_max = 0.5, 2.2
ess = 0.5
