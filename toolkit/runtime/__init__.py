"""Runtime side: everything after export (inference, quantize, validate, serve, edge). Never imports torch."""
