"""urbangen: generative urban layouts from OpenStreetMap, in JAX/Flax."""

__version__ = "0.1.0"
