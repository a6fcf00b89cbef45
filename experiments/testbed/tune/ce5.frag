[method ceis]
batch = 512, 1024
elite = 0.02, 0.05
smoothing = 0.2, 0.5
defensive = 0.2, 0.4
