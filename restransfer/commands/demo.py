"""`restransfer demo RUN|EXPORT [--port N] [--top-k K]`."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="serve a page on 127.0.0.1 to try a run or an export on dropped images (Gradio)",
        description="Serve a Gradio page on 127.0.0.1 where an image can be uploaded or dropped: the "
                    "top-k labels appear (and, for a run folder, the Grad-CAM overlay), computed as "
                    "`restransfer predict` computes them. Needs the demo extra: pip install 'restransfer[demo]'.")
    parser.add_argument("target", metavar="RUN|EXPORT", help="a run folder, or an export directory of one")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: the first free from 7860)")
    parser.add_argument("--top-k", type=int, default=5, help="labels shown (default 5)")
    parser.set_defaults(handler=_demo)


def _demo(args) -> int:
    from restransfer.errors import ConfigError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("`restransfer demo` serves its page with Gradio, which is not installed: "
                          "pip install 'restransfer[demo]'.") from None
    from restransfer.recipe.demo import demo

    demo(args.target, port=args.port, top_k=args.top_k, block=True)
    return 0
