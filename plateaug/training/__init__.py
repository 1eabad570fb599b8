"""Training the generator: real-crop loading and the pix2pix trainer."""
