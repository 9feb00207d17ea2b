"""Training the VirNucPro classifier as the original does (make_train_dataset_*.py,
features_extract.py, train.py), without Dagster: GenBank genomes in, training frames, class
sampling, the training loop and its metrics out. See the README's "Training" section."""
