"""Export a checkpoint to ONNX, TorchScript or safetensors (stylenet-export). See --help."""

from stylenet.cli.export import entry

entry()
