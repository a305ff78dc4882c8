// Writes <name>/reference.json for every tokenizer in this folder, from implementations nanoflow did not
// write: Hugging Face's JavaScript tokenizers (@huggingface/tokenizers) for tokenizer.json, and Debian's
// spm_encode / spm_decode for tokenizer.model.
//
//   cp tests/data/tokenizers/package.json /some/scratch/dir/ && npm install --prefix /some/scratch/dir
//   NODE_PATH=/some/scratch/dir/node_modules node tests/data/tokenizers/make_reference.mjs
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(process.env.NODE_PATH ?? here, "noop.js"));
const { Tokenizer } = require("@huggingface/tokenizers");
const package_dir = path.dirname(path.dirname(require.resolve("@huggingface/tokenizers")));
const version = JSON.parse(fs.readFileSync(path.join(package_dir, "package.json"), "utf8")).version;

const strings = JSON.parse(fs.readFileSync(path.join(here, "strings.json"), "utf8"));
const hf_names = ["llama3", "qwen3", "mistral"];
const spm_names = ["spm-bpe", "spm-bpe-ws"];

function write(name, reference, cases) {
  const file = path.join(here, name, "reference.json");
  const lines = cases.map((c) => "    " + JSON.stringify(c));
  fs.writeFileSync(file,
    `{\n  "reference": ${JSON.stringify(reference)},\n  "cases": [\n${lines.join(",\n")}\n  ]\n}\n`);
  console.log(`${file}: ${cases.length} cases`);
}

for (const name of hf_names) {
  const json = JSON.parse(fs.readFileSync(path.join(here, name, "tokenizer.json"), "utf8"));
  const config = JSON.parse(fs.readFileSync(path.join(here, name, "tokenizer_config.json"), "utf8"));
  const tok = new Tokenizer(json, config);
  const cases = [];
  for (const text of strings) {
    for (const add_special_tokens of [false, true]) {
      const ids = tok.encode(text, { add_special_tokens }).ids;
      const decode = (skip_special_tokens) => ids.length === 0 ? "" :
        tok.decode(ids, { skip_special_tokens, clean_up_tokenization_spaces: false });
      const decoded = decode(false);
      const decoded_skip_special = decode(true);
      cases.push({ text, add_special_tokens, ids, decoded, decoded_skip_special });
    }
  }
  write(name, `@huggingface/tokenizers ${version}`, cases);
}

// spm_encode reads one sentence per line, so strings with a line feed cannot be given to it.
const spm_version = execFileSync("dpkg-query", ["-W", "-f=${Version}", "sentencepiece"]).toString();
for (const name of spm_names) {
  const model = path.join(here, name, "tokenizer.model");
  const cases = [];
  for (const text of strings.filter((s) => !s.includes("\n"))) {
    for (const add_special_tokens of [false, true]) {
      const args = [`--model=${model}`, "--output_format=id"];
      if (add_special_tokens) args.push("--extra_options=bos");
      const out = execFileSync("spm_encode", args, { input: text + "\n" }).toString();
      const ids = out.trim() === "" ? [] : out.trim().split(/\s+/).map(Number);
      const decoded = execFileSync("spm_decode", [`--model=${model}`, "--input_format=id"],
        { input: ids.join(" ") + "\n" }).toString().replace(/\n$/, "");
      cases.push({ text, add_special_tokens, ids, decoded });
    }
  }
  write(name, `spm_encode (Debian sentencepiece ${spm_version})`, cases);
}
