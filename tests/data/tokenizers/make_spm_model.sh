#!/usr/bin/env bash
# Trains the small SentencePiece BPE models in spm-bpe/ and spm-bpe-ws/ with Debian's spm_train.
# The corpus is the GPL-3 and Apache-2.0 texts every Debian system ships, plus the test strings.
# Flags follow Llama-2's tokenizer.model: BPE, byte fallback, identity normalization, digits split.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > "$work/corpus.txt"
python3 -c 'import json,sys; [print(s) for s in json.load(open(sys.argv[1])) if s]' "$here/strings.json" >> "$work/corpus.txt"
common=(--input="$work/corpus.txt" --model_type=bpe --vocab_size=1200 --character_coverage=0.995
        --byte_fallback=true --split_digits=true --normalization_rule_name=identity
        --num_threads=1 --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2)
# Llama-2 style: keep runs of spaces, add a dummy prefix.
mkdir -p "$here/spm-bpe"
spm_train "${common[@]}" --model_prefix="$work/llama2_style" --remove_extra_whitespaces=false \
  --add_dummy_prefix=true --allow_whitespace_only_pieces=true --user_defined_symbols='<tool>,</tool>'
cp "$work/llama2_style.model" "$here/spm-bpe/tokenizer.model"
# Defaults for whitespace: collapse runs and strip ends.
mkdir -p "$here/spm-bpe-ws"
spm_train "${common[@]}" --model_prefix="$work/ws_style" --remove_extra_whitespaces=true --add_dummy_prefix=true
cp "$work/ws_style.model" "$here/spm-bpe-ws/tokenizer.model"
