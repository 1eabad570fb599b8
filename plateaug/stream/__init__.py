"""The stream: PlateGANStream (IterableDataset), augmentation, scene composition, seeding, collate."""
