[method ceis]
batch = 128, 512
elite = 0.05, 0.2
smoothing = 0.3
defensive = 0.3
