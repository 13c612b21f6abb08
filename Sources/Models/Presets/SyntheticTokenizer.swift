/// Builds a byte-level BPE `tokenizer.json` of any vocabulary size for randomly initialised models.
///
/// Ids below 4 are special tokens (`<s>`, `<pad>`, `</s>`, `<unk>` placed at the config's bos/pad/eos
/// ids), then the 256 byte tokens, then merges learned from a small built-in English text, then
/// merges of frequent tokens with each other until the vocabulary is full. Every id therefore decodes
/// to real text, and encoding is the same BPE that real GPT-2/OPT tokenizers run.
public enum SyntheticTokenizer {
    public static func write(vocabSize: Int, bos: Int?, eos: Int?, pad: Int?, to path: String) throws {
        let (vocab, merges, added) = build(vocabSize: vocabSize, bos: bos, eos: eos, pad: pad)
        try Tokenizer.writeByteLevelTokenizer(vocab: vocab, merges: merges, addedTokens: added, to: path)
    }

    static func build(vocabSize: Int, bos: Int?, eos: Int?, pad: Int?)
        -> (vocab: [String: Int32], merges: [(String, String)], added: [(Int32, String, special: Bool)])
    {
        var vocab: [String: Int32] = [:]
        var added: [(Int32, String, special: Bool)] = []
        // GPT-2/OPT's layout of the first ids, moved where the config puts bos/eos/pad.
        var specials: [Int: String] = [0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"]
        for (id, name) in [(pad, "<pad>"), (bos, "<s>"), (eos, "</s>")] {
            guard let id, id < 4 else { continue }
            if let other = specials.first(where: { $0.value == name })?.key, other != id { specials[other] = specials[id] }
            specials[id] = name
        }
        for id in 0..<min(4, vocabSize) {
            let name = specials[id]!
            vocab[name] = Int32(id)
            added.append((Int32(id), name, special: true))
        }
        let byteUnicode = ByteLevel.byteToScalar.map { Character($0) }
        var order: [String] = []
        for b in 0..<256 where vocab.count < vocabSize {
            let s = String(byteUnicode[b])
            vocab[s] = Int32(vocab.count)
            order.append(s)
        }

        // Learn merges from the corpus, GPT-2 style: words keep their leading space.
        var words: [[String]: Int] = [:]
        for word in corpus.split(separator: " ") {
            let bytes = Array((" " + word).utf8)
            words[bytes.map { String(byteUnicode[Int($0)]) }, default: 0] += 1
        }
        var merges: [(String, String)] = []
        while vocab.count < vocabSize {
            var counts: [PairKey: Int] = [:]
            for (w, n) in words {
                for i in 0..<(max(w.count - 1, 0)) { counts[PairKey(a: w[i], b: w[i + 1]), default: 0] += n }
            }
            guard let best = counts.filter({ $0.value >= 2 }).max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }) else { break }
            let merged = best.key.a + best.key.b
            merges.append((best.key.a, best.key.b))
            if vocab[merged] == nil {
                vocab[merged] = Int32(vocab.count)
                order.append(merged)
            }
            var next: [[String]: Int] = [:]
            for (w, n) in words {
                var out: [String] = []
                var i = 0
                while i < w.count {
                    if i + 1 < w.count && w[i] == best.key.a && w[i + 1] == best.key.b {
                        out.append(merged)
                        i += 2
                    } else {
                        out.append(w[i])
                        i += 1
                    }
                }
                next[out, default: 0] += n
            }
            words = next
        }

        // Fill the rest with merges of learned tokens, longest-learned first, skipping duplicates.
        let learned = Array(order.reversed())
        var i = 0, j = 0
        while vocab.count < vocabSize && i < learned.count {
            let merged = learned[i] + learned[j]
            if vocab[merged] == nil {
                merges.append((learned[i], learned[j]))
                vocab[merged] = Int32(vocab.count)
            }
            j += 1
            if j == learned.count { i += 1; j = 0 }
        }
        return (vocab, merges, added)
    }

    private struct PairKey: Hashable, Comparable {
        let a: String, b: String
        static func < (l: PairKey, r: PairKey) -> Bool { (l.a, l.b) < (r.a, r.b) }
    }

    static let corpus = """
    The rollout engine and the trainer share the same GPUs and move the weights between them in place. \
    A placement group reserves bundles of devices, and each training actor holds a fraction of a device. \
    Tensor parallel engines split every layer across ranks, and the ranks sum their partial results. \
    Hello, my name is the model, and the future of AI is reinforcement learning with verifiable rewards. \
    The capital of France is Paris. The president of the United States is elected every four years. \
    In the beginning the weights are random, then the trainer updates them with the policy gradient, \
    and the engine generates new samples with the new weights after every step of the training loop. \
    Once upon a time there was a little language model that wanted to learn how to add two numbers. \
    It tried and tried, and the reward told it when the answer was right and when it was wrong. \
    The quick brown fox jumps over the lazy dog. One, two, three, four, five, six, seven, eight, nine, ten. \
    This is a test of the system: the trainer exports its weights as one flat buffer with a layout, \
    and every rank of the engine opens the buffer of its own device and copies the shard it needs.
    """
}
