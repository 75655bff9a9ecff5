"""The inference commands' runs, on a model loaded from a checkpoint:

loading.py      a generation command line -> (config, task, model, generator), text codecs
generate.py     fairseq-generate: decode a binarized split, S-/T-/H-/D-/P- lines, BLEU
interactive.py  fairseq-interactive: decode lines of raw text
eval_lm.py      fairseq-eval-lm: loss and perplexity of a language model
output.py       fairseq's hypothesis lines
"""
