"""Model assembly: preprocessing inside the model, backbone, pooling, task head; optimizers."""
