"""The pipeline: drivers that sit above everything they drive (training grid via the sweep
engine, the ablation, the report). ``reproduce`` is the main job (`ctfrpu reproduce`)."""
