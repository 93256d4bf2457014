"""Features of a padded batch as each utterance gets them alone (decoding)."""

from typing import Tuple

import torch

from espnet_gated.compat import pad_list


class UtteranceWiseFrontend(torch.nn.Module):
    """``frontend`` applied to each utterance of a batch on its own, the features padded with
    zeros (as ESPnet pads them): ESPnet's batched STFT reads the padding into the last frames
    of a shorter utterance, which alone reflect its own signal. It runs in float32 also under
    autocast (ESPnet's model turns off only CUDA's autocast around its frontend)."""

    def __init__(self, frontend: torch.nn.Module):
        super().__init__()
        self.frontend = frontend

    def output_size(self) -> int:
        return self.frontend.output_size()

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(speech.device.type, enabled=False):
            if speech.size(0) == 1:
                return self.frontend(speech, lengths)
            alone = [self.frontend(speech[i : i + 1, :n], lengths[i : i + 1]) for i, n in enumerate(lengths.tolist())]
        return pad_list([feats[0] for feats, _ in alone], 0.0), torch.cat([n for _, n in alone])
