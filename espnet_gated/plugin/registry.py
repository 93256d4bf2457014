"""Registration of the gated classes in ESPnet's S2T class choices.

ESPnet has no plugin mechanism: ``S2TTask.build_model`` and ``build_preprocess_fn`` look classes
up in the module-level ``ClassChoices`` of ``espnet2.tasks.s2t``, so the classes are added there.
"""

from espnet2.tasks import s2t

from espnet_gated.method.decoder import GatedTransformerDecoder
from espnet_gated.method.encoder import GatedEBranchformerEncoder
from espnet_gated.method.model import GatedESPnetS2TModel
from espnet_gated.plugin.preprocessor import NATURAL_LENGTH, NaturalLengthS2TPreprocessor

#: (ClassChoices, name, class): exactly the names this package adds
REGISTRATIONS = (
    (s2t.encoder_choices, "gated_e_branchformer", GatedEBranchformerEncoder),
    (s2t.decoder_choices, "gated_transformer", GatedTransformerDecoder),
    (s2t.model_choices, "gated_espnet", GatedESPnetS2TModel),
    (s2t.preprocessor_choices, NATURAL_LENGTH, NaturalLengthS2TPreprocessor),
)


def register() -> None:
    """Add the gated classes to ESPnet's S2T choices (idempotent)."""
    for choices, name, cls in REGISTRATIONS:
        if choices.base_type is not None and not issubclass(cls, choices.base_type):
            raise TypeError(f"{cls.__name__} must subclass {choices.base_type.__name__}")
        existing = choices.classes.get(name)
        if existing is not None and existing is not cls:
            raise RuntimeError(f"--{choices.name} {name} is already registered as {existing}")
        choices.classes[name] = cls
