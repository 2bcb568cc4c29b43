"""The zoo's registered names by builder: most names are aliases (timm's named variants: ``resnet18`` is
``resnet`` at depth 18, ``mobilenetv2_050`` is ``mobilenetv2`` at width 0.5), so the tests that build
and run models go over one name per builder, and one cheap test over the aliases."""
from __future__ import annotations

import inspect

from edgekd.train.models import MODELS


def builder_of(name: str) -> str:
    """The registered name whose function ``name``'s function calls (an alias's builder, read from the
    names it refers to and closes over), followed to the end; ``name`` itself when it calls none."""
    fn = MODELS.get(name)
    refs = inspect.getclosurevars(fn)
    used = [*refs.nonlocals.values(), *refs.globals.values()]
    called = [other for other in MODELS.names()
              if MODELS.get(other) is not fn and any(MODELS.get(other) is value for value in used)]
    assert len(called) <= 1, (name, called)
    return builder_of(called[0]) if called else name


#: one name per builder function ("cnn", "mlp", "resnet", ...), each at its defaults
BUILDERS = sorted({builder_of(name) for name in MODELS.names()})
#: every other name, with the builder it resolves to
ALIASES = {name: builder_of(name) for name in MODELS.names() if builder_of(name) != name}
