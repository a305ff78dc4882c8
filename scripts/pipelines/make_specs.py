#!/usr/bin/env python3
"""Writes the hand-written single-GPU pipeline specs of configs/pipelines/ (nanobatch.json, overlap.json,
overlap-split-decode.json) from one description, so the nano-batch-only spec and the overlapped spec split the
step the same way and differ only in streams and SM budgets.

usage: make_specs.py OUT_DIR [--decode-sms N] [--overlap-fraction F]

The split: nano-batch "dec" holds the step's decode rows, "pre" its prefill rows (or, in the split-decode
variant, "dec0"/"dec1" each half of the decode rows). On the compute stream, the decode nano-batch's QKV and
RoPE come first; the memory stream then runs its decode attention with a small SM budget while the compute
stream runs the prefill nano-batch's whole layer (QKV, prefill attention, O, FFN) on the remaining SMs; the
decode nano-batch's O and FFN follow on all SMs.
"""
import argparse
import json
import os

LAYER_OPS = ["attn_norm", "qkv_gemm", "rope_kv_append", "decode_attention", "prefill_attention", "o_gemm",
             "ffn_norm", "gate_up_gemm", "activation", "down_gemm"]
FRONT = ["attn_norm", "qkv_gemm", "rope_kv_append"]
BACK = ["o_gemm", "ffn_norm", "gate_up_gemm", "activation", "down_gemm"]
RESOURCE = {"attn_norm": "memory", "qkv_gemm": "compute", "rope_kv_append": "memory", "decode_attention": "memory",
            "prefill_attention": "compute", "o_gemm": "compute", "ffn_norm": "memory", "gate_up_gemm": "compute",
            "activation": "memory", "down_gemm": "compute"}


def entry(op, nano_batch, stream, order, sm):
    e = {"op": op, "nano_batch": nano_batch, "resource": RESOURCE[op], "stream": stream, "order": order}
    e.update(sm)
    return e


def build(name, description, decode_batches, overlapped, decode_sms, overlap_fraction, min_decode_rows=0,
          min_prefill_rows=0):
    nano_batches = [{"name": "pre", "prefill": [0.0, 1.0]}]
    if len(decode_batches) == 1:
        nano_batches.insert(0, {"name": "dec", "decode": [0.0, 1.0]})
    else:
        nano_batches[0:0] = [{"name": "dec0", "decode": [0.0, 0.5]}, {"name": "dec1", "decode": [0.5, 1.0]}]
    compute = "compute" if overlapped else "main"
    memory = "memory" if overlapped else "main"
    full = {"sm_fraction": 1.0}
    shared = {"sm_fraction": overlap_fraction} if overlapped else full
    ops, order = [], 0

    def add(op, nb, stream, sm):
        nonlocal order
        ops.append(entry(op, nb, stream, order, sm))
        order += 1

    decode_ops = []
    for nb in decode_batches:
        for op in FRONT:
            add(op, nb, compute, full)
        # In the nano-batch-only spec the decode attention sits where the overlapped spec starts it.
        decode_ops.append(nb)
        if not overlapped:
            add("decode_attention", nb, memory, full)
    for op in FRONT + ["prefill_attention"] + BACK:
        add(op, "pre", compute, shared)
    for nb in decode_batches:
        for op in BACK:
            add(op, nb, compute, full)
    if overlapped:
        order = 0
        for nb in decode_ops:
            add("decode_attention", nb, memory, {"sm_count": decode_sms})
    spec = {"name": name, "description": description, "streams": [compute, memory] if overlapped else ["main"],
            "nano_batches": nano_batches, "nano_ops": ops}
    if min_decode_rows:
        spec["min_decode_rows"] = min_decode_rows
    if min_prefill_rows:
        spec["min_prefill_rows"] = min_prefill_rows
    return spec


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--decode-sms", type=int, default=40)
    parser.add_argument("--overlap-fraction", type=float, default=0.7)
    args = parser.parse_args()
    specs = [
        build("nanobatch", "Two nano-batches (the step's decode rows, its prefill rows), every nano-op on one stream "
              "with the whole GPU: nano-batching without overlap, the ablation's middle step.",
              ["dec"], False, args.decode_sms, args.overlap_fraction),
        build("overlap", f"The nanobatch split, overlapped: the decode rows' attention runs on the memory stream on "
              f"{args.decode_sms} SMs while the compute stream runs the prefill rows' whole layer on "
              f"{args.overlap_fraction:g} of the SMs; the decode rows' O and FFN follow on all SMs.",
              ["dec"], True, args.decode_sms, args.overlap_fraction),
        build("overlap-split-decode", f"As overlap, with the decode rows in two halves so that in decode-only steps "
              f"the first half's attention overlaps the second half's QKV and the second half's attention the "
              f"first half's O and FFN.", ["dec0", "dec1"], True, args.decode_sms, args.overlap_fraction),
    ]
    # The splits bench_overlap measured best at the steady state of fixed 1024/512 (docs/perf.md).
    for decode_sms in (56, 64):
        specs.append(build(f"overlap-a{decode_sms}",
                           f"As overlap, sized by bench_overlap at the steady state of fixed 1024/512: the decode rows' "
                           f"attention on {decode_sms} SMs on the memory stream, the prefill rows' whole layer beside it "
                           f"on the compute stream with no SM target (cuBLASLt and the other kernels take the SMs the "
                           f"attention leaves); the decode rows' O and FFN follow.",
                           ["dec"], True, decode_sms, 1.0))
    # Overlap only where the profile of overlap-a56 showed it winning (steps of 384 or more decodes).
    specs.append(build("overlap-a56-s384",
                       "As overlap-a56 in steps of 384 or more decode rows; steps with fewer run the sequential spec "
                       "(the engine profile of fixed 1024/512 showed overlap-a56 losing 2-11% where there is little "
                       "decode attention to hide).", ["dec"], True, 56, 1.0, min_decode_rows=384))
    # And not in decode-only steps, where the prefill nano-batch is empty and nothing runs beside the attention.
    specs.append(build("overlap-a56-mixed",
                       "As overlap-a56-s384, and only in steps that also have prefill rows: in a decode-only step the "
                       "prefill nano-batch is empty, so the decode attention would run on 56 SMs with nothing beside "
                       "it (with overlap-a56-s384 the sharegpt and lmsys traces ran 7-8% slower than sequential on an "
                       "H100).", ["dec"], True, 56, 1.0, min_decode_rows=384, min_prefill_rows=1))
    os.makedirs(args.out_dir, exist_ok=True)
    for spec in specs:
        with open(os.path.join(args.out_dir, spec["name"] + ".json"), "w") as f:
            f.write("{\n")
            f.write(f'  "name": {json.dumps(spec["name"])},\n')
            f.write(f'  "description": {json.dumps(spec["description"])},\n')
            for key in ("min_decode_rows", "min_prefill_rows"):
                if key in spec:
                    f.write(f'  "{key}": {spec[key]},\n')
            f.write(f'  "streams": {json.dumps(spec["streams"])},\n')
            f.write(f'  "nano_batches": {json.dumps(spec["nano_batches"])},\n')
            f.write('  "nano_ops": [\n')
            f.write(",\n".join("    " + json.dumps(op) for op in spec["nano_ops"]))
            f.write("\n  ]\n}\n")


if __name__ == "__main__":
    main()
