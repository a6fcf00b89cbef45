[method ams]
particles = 192, 384
kill = 0.1, 0.3
moves = 1, 2

[method itgis]
temperature = 0.45
batch = 64
