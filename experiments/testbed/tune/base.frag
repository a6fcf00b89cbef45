[method itgis]
temperature = 1.0
batch = 64

[method mhis]
temperature = 2.24
walkers = 32
burn_in = 64

[method ams]
particles = 96
kill = 0.1
moves = 3
