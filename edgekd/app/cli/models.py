"""``edgekd models``: the zoo's names, families, parameters and MACs
(:func:`edgekd.train.models.listing.list_models`)."""
from __future__ import annotations

import inspect

import click

from edgekd.app.cli.options import late_option


def _default(name: str) -> object:
    """``list_models``' default of ``name``, shown in the help (imported then: torch)."""
    from edgekd.train.models.listing import list_models

    return inspect.signature(list_models).parameters[name].default


@click.command("models")
@click.argument("pattern", required=False)
@late_option("--image-size", metavar="N|H,W", default=lambda: _default("image_size"),
             help="Count on images of N×N or H×W pixels, as distill's --image-size makes them.")
@late_option("--channels", type=int, metavar="1|3", default=lambda: _default("channels"),
             help="Count on grayscale (1) or RGB (3) images, as distill's --channels makes them.")
@late_option("--classes", type=int, metavar="K", default=lambda: _default("num_classes"),
             help="Count with this many classes.")
def models_command(pattern, image_size, channels, classes):
    """List the model zoo: each name's family, parameters and MACs at an input size.

    PATTERN picks names: with wildcards as a shell does ('mobilenet*'), else any name that contains it.

    \b
      edgekd models                                        every model, on 3×32×32 images, 10 classes
      edgekd models 'mobilenet*' --image-size 28 --channels 1
      edgekd models resnet --image-size 224 --classes 1000
    """
    from edgekd.app.render.models import print_models
    from edgekd.device.images import ImageOptions
    from edgekd.train.models.listing import list_models

    images = ImageOptions.parse(image_size, channels)          # distill's parsing of both
    given = {"image_size": images.size, "channels": images.channels, "num_classes": classes}
    print_models(list_models(pattern, **{key: value for key, value in given.items() if value is not None}))
