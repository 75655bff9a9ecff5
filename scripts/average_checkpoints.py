"""fairseq's `python scripts/average_checkpoints.py --inputs ... --output ...`, here too
(fairseq_cli/average_checkpoints.py; also installed as the command fairseq-average-checkpoints)."""

from fairseq_cli.average_checkpoints import cli_main

if __name__ == "__main__":
    cli_main()
