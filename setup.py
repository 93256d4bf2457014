"""espnet-gated: context-aware dynamic pruning (gated OWSM) as an ESPnet plugin."""

from setuptools import find_packages, setup

setup(
    name="espnet-gated",
    version="0.1.0",
    description="Gated multilingual ASR/ST for ESPnet: context-aware dynamic pruning of OWSM models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_gated", "espnet_gated.*"]),
    # the Pythons of espnet_gated.envcheck.SUPPORTED: 3.10-3.11 with espnet 202511, 3.12-3.13 with espnet 202611
    python_requires=">=3.10,<3.14",
    install_requires=[
        # Exact pins: ESPnet's S2T task imports torchaudio, whose wheels load with one torch release only
        # (torchaudio 2.11.1 does not with torch 2.11.0); torch 2.11.0 suits both ESPnet releases. The plugin
        # builds on ESPnet's internals: one tested release per Python range (202609 and later need Python >= 3.12).
        # Everything else is locked in tools/lock/<platform>.txt, not here (README, "Installation notes").
        "torch==2.11.0",
        "torchaudio==2.11.0",
        'espnet==202511; python_version < "3.12"',
        'espnet==202611; python_version >= "3.12"',
        "einops",  # imported by espnet2.tasks.s2t but not declared by espnet
        "sentencepiece",
        "sacrebleu>=2",
        "jiwer>=4",
        "soundfile",
        "soxr",  # resampling (also a librosa dependency of espnet)
        "matplotlib",
        "PyYAML",
        "tensorboard",  # ESPnet's trainer writes TensorBoard logs by default
        # ESPnet's error calculator (CER/WER in every validation) imports it; 202611 moved it to espnet's extras
        "editdistance",
    ],
    extras_require={
        "test": ["pytest", "hypothesis"],
        "hub": ["huggingface_hub"],  # --init_from espnet/owsm_v3.1_ebf (a hub name instead of a local dir)
    },
    entry_points={},
)
