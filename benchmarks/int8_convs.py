"""Would int8 convolutions (PyTorch's x86 quantization) make ``--precision fast`` 2x on this CPU?

Times the SPADE decoder's dominant conv shapes at 256 px (float32 vs a static-quantized int8 conv of
``torch.ao.nn.quantized``: per-channel int8 weights, per-tensor uint8 input, output requantized to uint8 and
dequantized), with the input quantize and output dequantize counted, and reports each conv's relative error
||y_int8 - y_fp32|| / ||y_fp32|| on a random input (scales from the tensors' own min / max: the best case of
calibration). Two input ranges: the full 8 bits, and 7 bits (``reduce_range``, what PyTorch's default x86 qconfig
uses on CPUs without VNNI: their u8 x s8 multiply-add saturates 16-bit pair sums).
For scale: bf16 convs (~0.4% relative error each) gave 33.7 dB against exact over the whole generator, so a
per-conv error several times larger cannot keep the 35 dB bar.

Usage: python benchmarks/int8_convs.py [--engine x86|fbgemm|onednn] [--repeats 8]; writes
benchmarks/results/int8_convs.md.
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
# (label, in channels, out channels, kernel, map size px) of the decoder at 256 px output
SHAPES = [("G_middle conv 512->512 @64", 512, 512, 3, 64),
          ("SPADE gamma|beta 128->1024 @64", 128, 1024, 3, 64),
          ("up_0 conv_0 512->256 @128", 512, 256, 3, 128),
          ("up_0 conv_1 256->256 @128", 256, 256, 3, 128),
          ("up_1 conv_0 256->64 @256", 256, 64, 3, 256),
          ("up_1 gamma|beta 128->512 @256", 128, 512, 3, 256)]


def seconds(fn, repeats: int) -> float:
    with torch.no_grad():
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t) / repeats


def measure(cin: int, cout: int, k: int, size: int, levels: int, repeats: int) -> tuple[float, float, float]:
    """(float32 s, int8 s, relative error) of one conv on a [1, cin, size, size] channels-last input."""
    import torch.ao.nn.quantized as nnq

    x = torch.randn(1, cin, size, size).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(cin, cout, k, padding=k // 2).eval()
    with torch.no_grad():
        y = conv(x)
    q = nnq.Conv2d(cin, cout, k, padding=k // 2)
    w_scale = conv.weight.detach().abs().amax((1, 2, 3)) / 127
    q.set_weight_bias(torch.quantize_per_channel(conv.weight.detach(), w_scale, torch.zeros(cout, dtype=torch.long),
                                                 0, torch.qint8), conv.bias.detach())
    lo, hi = float(y.min()), float(y.max())
    q.scale, q.zero_point = (hi - lo) / 255, int(round(-lo * 255 / (hi - lo)))
    x_lo, x_hi = float(x.min()), float(x.max())
    x_scale = (x_hi - x_lo) / (levels - 1)
    x_zero = int(round(-x_lo / x_scale))

    def int8():
        return q(torch.quantize_per_tensor(x, x_scale, x_zero, torch.quint8)).dequantize()

    with torch.no_grad():
        err = float((int8() - y).norm() / y.norm())
    return seconds(lambda: conv(x), repeats), seconds(int8, repeats), err


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="x86", choices=torch.backends.quantized.supported_engines)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--out", default=str(RESULTS / "int8_convs.md"))
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*quantize.*deprecated")
    torch.backends.quantized.engine = a.engine
    torch.manual_seed(0)
    cpu = torch.backends.cpu.get_cpu_capability()
    rows = ["| conv | fp32 s | int8 s (8-bit input) | speed-up | rel. error | int8 s (7-bit input) | speed-up | "
            "rel. error |", "|---|---|---|---|---|---|---|---|"]
    total = [0.0, 0.0, 0.0]
    for label, cin, cout, k, size in SHAPES:
        f8, i8, e8 = measure(cin, cout, k, size, 256, a.repeats)
        f7, i7, e7 = measure(cin, cout, k, size, 128, a.repeats)
        total = [total[0] + f8, total[1] + i8, total[2] + i7]
        rows.append(f"| {label} | {f8:.4f} | {i8:.4f} | {f8 / i8:.2f}x | {100 * e8:.1f}% | {i7:.4f} | {f7 / i7:.2f}x "
                    f"| {100 * e7:.1f}% |")
        print(rows[-1], flush=True)
    rows.append(f"| all of the above | {total[0]:.4f} | {total[1]:.4f} | {total[0] / total[1]:.2f}x | "
                f"| {total[2]:.4f} | {total[0] / total[2]:.2f}x | |")
    text = "\n".join([f"# int8 convolutions vs float32 (`python benchmarks/int8_convs.py --engine {a.engine}`)", "",
                      f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, capability "
                      f"{cpu}, {torch.get_num_threads()} threads, quantized engine {a.engine}; random weights and "
                      "inputs; times include quantizing the input and dequantizing the output.", "", *rows, ""])
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
