[method ceis]
batch = 256
elite = 0.1
smoothing = 0.3, 0.7
defensive = 0.3, 0.6
