import os
import sys

# Tests import the project from the repository root, and run on the CPU with one device unless
# a test asks for more (in a subprocess).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
