"""retrain-hicra: HICRA planning-token amplification, a mined-gram planning detector, `retrain hicra mine`."""

__version__ = "0.1.0"
