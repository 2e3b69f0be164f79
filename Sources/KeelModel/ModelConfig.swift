import KeelCore

/// The transformer family: it decides the layers, the parameter names and the export format.
public enum Architecture: String, Sendable, Codable, CaseIterable {
    /// GPT-2: learned positions, LayerNorm, GELU-tanh MLP, biases, head tied to the token embedding.
    case gpt2
    /// Llama: RoPE, RMSNorm, SwiGLU MLP, grouped-query attention, no biases, head untied unless the config ties it.
    case llama
}

/// The shape of a decoder-only transformer. Keys in `[model]` of the TOML config use the snake_case names
/// given on each property.
public struct ModelConfig: Sendable, Equatable, Codable {
    /// `arch`
    public var architecture: Architecture
    /// `vocab_size`
    public var vocabSize: Int
    /// `n_layer`
    public var layers: Int
    /// `n_head`
    public var heads: Int
    /// `n_kv_head` (Llama; GPT-2 always uses `n_head`)
    public var kvHeads: Int
    /// `d_model`
    public var width: Int
    /// `d_ff`: hidden width of the MLP
    public var hiddenWidth: Int
    /// `max_seq_len`: longest sequence (size of GPT-2's position table; RoPE table length)
    public var maxLength: Int
    /// `norm_eps`
    public var normEpsilon: Float
    /// `rope_theta` (Llama)
    public var ropeTheta: Double
    /// `tie_embeddings`: the output head is the token embedding (always for GPT-2; Llama models such as SmolLM2
    /// and Llama 3.2 1B tie it too)
    public var tiedEmbeddings: Bool

    public init(
        architecture: Architecture, vocabSize: Int, layers: Int, heads: Int, kvHeads: Int? = nil, width: Int,
        hiddenWidth: Int? = nil, maxLength: Int, normEpsilon: Float? = nil, ropeTheta: Double = 10_000,
        tiedEmbeddings: Bool? = nil
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = architecture == .gpt2 ? heads : (kvHeads ?? heads)
        self.width = width
        self.hiddenWidth = hiddenWidth ?? ModelConfig.defaultHiddenWidth(architecture, width: width)
        self.maxLength = maxLength
        self.normEpsilon = normEpsilon ?? (architecture == .gpt2 ? 1e-5 : 1e-6)
        self.ropeTheta = ropeTheta
        self.tiedEmbeddings = tiedEmbeddings ?? (architecture == .gpt2)
    }

    /// Width of one attention head.
    public var headDim: Int { width / heads }

    /// GPT-2 uses 4·d; Llama uses ⅔ of that for each of its two SwiGLU input projections, rounded up to 64,
    /// which keeps the parameter count of the two families close.
    public static func defaultHiddenWidth(_ architecture: Architecture, width: Int) -> Int {
        switch architecture {
        case .gpt2: return 4 * width
        case .llama: return (8 * width / 3 + 63) / 64 * 64
        }
    }

    /// Named shapes: `(n_layer, n_head, d_model, max_seq_len)`.
    public static let presets: [String: (layers: Int, heads: Int, width: Int, maxLength: Int)] = [
        "tiny": (2, 4, 64, 64),
        "small": (6, 6, 384, 256),
        "gpt2-124m": (12, 12, 768, 1024),
    ]

    /// Checks every constraint and names the key at fault.
    public func validate() throws {
        func require(_ condition: Bool, _ key: String, _ message: String) throws {
            if !condition { throw KeelError("config: model.\(key) \(message)") }
        }
        try require(vocabSize > 0, "vocab_size", "must be positive (got \(vocabSize))")
        try require(layers > 0, "n_layer", "must be positive (got \(layers))")
        try require(heads > 0, "n_head", "must be positive (got \(heads))")
        try require(width > 0, "d_model", "must be positive (got \(width))")
        try require(width % heads == 0, "n_head", "(\(heads)) must divide d_model (\(width))")
        try require(kvHeads > 0 && heads % kvHeads == 0, "n_kv_head", "(\(kvHeads)) must divide n_head (\(heads))")
        try require(architecture == .gpt2 || headDim % 2 == 0, "n_head", "must leave an even head dimension for RoPE (d_model / n_head = \(headDim))")
        try require(hiddenWidth > 0, "d_ff", "must be positive (got \(hiddenWidth))")
        try require(maxLength > 0, "max_seq_len", "must be positive (got \(maxLength))")
        try require(normEpsilon > 0 && normEpsilon.isFinite, "norm_eps", "must be a positive number (got \(normEpsilon))")
        try require(ropeTheta > 0 && ropeTheta.isFinite, "rope_theta", "must be a positive number (got \(ropeTheta))")
        try require(architecture != .gpt2 || tiedEmbeddings, "tie_embeddings", "must be true for gpt2 (its head is the token embedding)")
        // Sizes read from a damaged or hostile file (a GGUF header, a config.json) must be an error here, not an
        // overflow trap or an allocation of terabytes when the model's tables are laid out.
        try require(layers <= Self.mostLayers, "n_layer", "is \(layers), over \(Self.mostLayers): not a model Keel can hold")
        func sum(_ a: Int?, _ b: Int?) -> Int? {
            guard let a, let b else { return nil }
            let (total, overflow) = a.addingReportingOverflow(b)
            return overflow ? nil : total
        }
        // Over-estimates: four square projections, three feed-forward matrices and a few vectors per layer, and
        // an untied head.
        let perLayer = sum(sum(checkedProduct([4, width, width]), checkedProduct([3, width, hiddenWidth])), checkedProduct([8, width]))
        let total = sum(perLayer.flatMap { checkedProduct([layers], times: $0) }, checkedProduct([2, vocabSize, width]))
        try require(total.map { $0 <= Self.mostParameters } ?? false, "n_layer",
                    "(\(layers)), d_model (\(width)), d_ff (\(hiddenWidth)) and vocab_size (\(vocabSize)) make over 2⁴⁰ parameters: not a model Keel can hold")
        try require(maxLength <= Self.mostPositions, "max_seq_len", "is \(maxLength), over \(Self.mostPositions) positions")
        // Llama's rotary tables hold a cosine and a sine per position and pair of a head's dimensions, made at load: a
        // file of kilobytes declaring a long context and one wide head would ask for hundreds of gigabytes.
        try require(architecture != .llama || maxLength * (headDim / 2) <= Self.mostRotaryAngles, "max_seq_len",
                    "(\(maxLength)) × half the head dimension (\(headDim / 2)) is over 2²⁸ rotary angles: the tables alone would take \((maxLength * headDim * 4) >> 30) GiB")
    }

    /// The most rotary angles (positions × half a head) a Llama's tables may hold: 2²⁸, 1 GiB each for the cosines
    /// and the sines (a context of a million positions with heads of 128 holds 2²⁶).
    static let mostRotaryAngles = 1 << 28

    /// The most layers a model may have (the deepest published models have under 200; llama.cpp allows 512).
    static let mostLayers = 4096
    /// The most parameters a model may have: 2⁴⁰, about 1.1 trillion (4.4 TB in fp32).
    static let mostParameters = 1 << 40
    /// The longest context a model may have: 2²⁴ positions (Llama 4 Scout's is 10 million).
    static let mostPositions = 1 << 24

    /// The keys of the JSON form used by `state.json` and the NumPy reference (matches the TOML keys).
    enum CodingKeys: String, CodingKey {
        case architecture = "arch", vocabSize = "vocab_size", layers = "n_layer", heads = "n_head"
        case kvHeads = "n_kv_head", width = "d_model", hiddenWidth = "d_ff", maxLength = "max_seq_len"
        case normEpsilon = "norm_eps", ropeTheta = "rope_theta", tiedEmbeddings = "tie_embeddings"
    }

    /// Decodes the JSON form; `tie_embeddings`, absent from checkpoints written before Llama could tie its head,
    /// takes the family's default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try container.decode(Architecture.self, forKey: .architecture)
        vocabSize = try container.decode(Int.self, forKey: .vocabSize)
        layers = try container.decode(Int.self, forKey: .layers)
        heads = try container.decode(Int.self, forKey: .heads)
        kvHeads = try container.decode(Int.self, forKey: .kvHeads)
        width = try container.decode(Int.self, forKey: .width)
        hiddenWidth = try container.decode(Int.self, forKey: .hiddenWidth)
        maxLength = try container.decode(Int.self, forKey: .maxLength)
        normEpsilon = try container.decode(Float.self, forKey: .normEpsilon)
        ropeTheta = try container.decode(Double.self, forKey: .ropeTheta)
        tiedEmbeddings = try container.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? (architecture == .gpt2)
    }
}
