/// The special tokens that end a model's reply, whatever its tokenizer names as its end of sequence: an instruction
/// model's turn ends with `<|eot_id|>` (Llama 3), `<|end|>` (Phi), `<end_of_turn>` (Gemma), while its
/// `eos_token` may be `<|end_of_text|>` or `<|endoftext|>`. Generation (`keel generate`, `keel serve`) and GRPO's
/// sampling stop at the same ones.
public enum EndOfTurn {
    /// The token texts llama.cpp ends generation at (its `llama-vocab.cpp`, 2025: end of turn, of message, of text).
    public static let texts = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
                               "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>",
                               "<end_of_utterance>", "<｜end▁of▁sentence｜>"]

    /// Those of `texts` that are special tokens of `tokenizer`, in that order.
    public static func tokens(in tokenizer: any TextTokenizer) -> [(text: String, token: Int32)] {
        texts.compactMap { text in tokenizer.specialToken(text).map { (text, $0) } }
    }
}
