"""espnet-gated: context-aware dynamic pruning for OWSM-style speech models in ESPnet.

The modules that build models through ESPnet's S2T task (``espnet_gated.plugin.tasks`` and
``espnet_gated.decoding.inference``, and every tool that uses them) register the gated components
on import (``encoder: gated_e_branchformer``, ``decoder: gated_transformer``,
``model: gated_espnet``; see ``espnet_gated.plugin.registry``); spawned DDP workers import
``espnet_gated.plugin.tasks`` and register too. The data, scoring and report tools do not import
ESPnet, which takes ~15 s to import.
"""

__version__ = "0.1.0"
