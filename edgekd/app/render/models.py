"""``edgekd models``' table (rich): one row per zoo model."""
from __future__ import annotations

from rich.table import Table

from edgekd.core.console import report_console
from edgekd.train.models.listing import ZooListing


def print_models(listing: ZooListing) -> None:
    """The listing's models, with the input they were counted on."""
    channels, height, width = listing.input_shape
    count = len(listing.models)
    table = Table(title=f"{count} model{'s' if count > 1 else ''}; parameters and MACs of one {channels}×{height}×"
                        f"{width} sample, {listing.num_classes} classes", title_justify="left")
    for header in ("model", "family", "parameters", "MACs", "description"):
        table.add_column(header, justify="right" if header in ("parameters", "MACs") else "left",
                         no_wrap=header != "description")
    for m in listing.models:
        table.add_row(m.name, m.family, f"{m.parameters:,}", f"{m.macs:,}", m.description)
    report_console().print(table)
