"""Loading a Hugging Face model directory the way every check here needs it."""
import warnings


def load_float32(model_dir):
    """Load `model_dir` in float32 with eager attention; return (model, loading info)."""
    import torch
    import transformers
    transformers.utils.logging.disable_progress_bar()
    kwargs = dict(attn_implementation="eager", output_loading_info=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model, info = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)
        except TypeError:   # transformers < 4.56 only knows torch_dtype
            model, info = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, **kwargs)
    model.eval()
    return model, info
