"""espnet-gated: context-aware dynamic pruning for OWSM-style speech models in ESPnet.

Importing the package registers the gated components in ESPnet's S2T task
(``encoder: gated_e_branchformer``, ``decoder: gated_transformer``,
``model: gated_espnet``), so ESPnet's own ``S2TTask`` can build and load gated models.
Every module of the package imports this first, so spawned DDP workers register too.
"""

from espnet_gated.registry import register

__version__ = "0.1.0"

register()
