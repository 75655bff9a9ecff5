from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field, eval_str_list

__all__ = ["ChoiceEnum", "FairseqDataclass", "cfg_field", "eval_str_list"]
