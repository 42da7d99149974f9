"""Networks: the VGG16/VGG19 feature network, its weights format, training, and ported checkpoints."""
