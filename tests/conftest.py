"""Make the repo root importable and run tests single-threaded."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to a busy machine
