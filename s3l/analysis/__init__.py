"""Unit quality analysis (`s3l analyze-units`): metrics, rate alignment, plots, layer sweep, quantizer codes."""
