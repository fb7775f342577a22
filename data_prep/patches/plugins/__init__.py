"""ms-swift external plugin files: each loads one registered patch in a `swift sft` / `swift export` child."""
