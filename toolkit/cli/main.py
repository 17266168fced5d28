"""The `toolkit` command: joins the command modules into one Typer app."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.cli import bench as bench_cmd
from toolkit.cli import edge as edge_cmd
from toolkit.cli import explain as explain_cmd
from toolkit.cli import export as export_cmd
from toolkit.cli import federate as federate_cmd
from toolkit.cli import generate as generate_cmd
from toolkit.cli import import_ as import_cmd
from toolkit.cli import info as info_cmd
from toolkit.cli import predict as predict_cmd
from toolkit.cli import quantize as quantize_cmd
from toolkit.cli import recipes as recipes_cmd
from toolkit.cli import serve as serve_cmd
from toolkit.cli import sign as sign_cmd
from toolkit.cli import train as train_cmd
from toolkit.cli import tune as tune_cmd
from toolkit.cli import validate as validate_cmd
from toolkit.cli._common import STATE
from toolkit.cli._render import hide_flag_types

hide_flag_types()

app = typer.Typer(
    name="toolkit",
    help="Train PyTorch models from recipes, export them to self-describing ONNX, and deploy without torch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        import toolkit

        typer.echo(f"toolkit {toolkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    STATE["debug"] = debug


app.command("recipes")(recipes_cmd.recipes)
app.command("train")(train_cmd.train)
app.command("eval")(train_cmd.eval_run)
app.command("tune")(tune_cmd.tune)
app.add_typer(federate_cmd.app, name="federate")
app.command("export")(export_cmd.export)
app.command("generate")(generate_cmd.generate)
app.command("validate")(validate_cmd.validate)
app.command("info")(info_cmd.info)
app.command("import")(import_cmd.import_model)
app.command("predict")(predict_cmd.predict)
app.command("explain")(explain_cmd.explain)
app.add_typer(edge_cmd.app, name="edge")
app.command("serve")(serve_cmd.serve)
app.command("quantize")(quantize_cmd.quantize)
app.command("bench")(bench_cmd.bench)
app.command("sign")(sign_cmd.sign)
app.command("verify")(sign_cmd.verify)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
