import Synchronization

/// Byte-pair encoding over token ids: a word starts as one token per byte-level character and the
/// adjacent pair with the lowest merge rank is merged until no pair has a merge, leftmost first among
/// equal ranks — the order of Hugging Face tokenizers' priority queue, which gives the same result as
/// GPT-2's reference loop. A heap keeps long words O(n log n).
final class BPEModel: Sendable {
    struct Merge {
        var rank: Int32
        var result: Int32
    }

    /// Token id of each byte's byte-level character (nil when the vocabulary lacks it; such bytes are
    /// dropped, as Hugging Face does without an unknown token).
    let byteIds: [Int32?]
    /// (left id, right id) packed into 64 bits → rank and merged id.
    let merges: [UInt64: Merge]
    /// When set, a word that is itself in the vocabulary is not split (`ignore_merges`).
    let wordIds: [String: Int32]?
    private let cache = Mutex<[[UInt8]: [Int32]]>([:])
    private static let cacheLimit = 10_000

    init(byteIds: [Int32?], merges: [UInt64: Merge], wordIds: [String: Int32]?) {
        self.byteIds = byteIds
        self.merges = merges
        self.wordIds = wordIds
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// The ids of one pre-tokenized piece (its UTF-8 bytes), appended to `out`.
    func encode(_ word: [UInt8], into out: inout [Int32]) {
        if let hit = cache.withLock({ $0[word] }) {
            out += hit
            return
        }
        let ids = merge(word)
        cache.withLock { cache in
            if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[word] = ids
        }
        out += ids
    }

    private func merge(_ word: [UInt8]) -> [Int32] {
        if let wordIds, let id = wordIds[ByteLevel.encode(word)] { return [id] }
        var ids = word.compactMap { byteIds[Int($0)] }
        guard ids.count > 1 else { return ids }

        // Doubly linked symbols; a merged symbol keeps the left one's position.
        var next = Array(1...ids.count)
        next[ids.count - 1] = -1
        var prev = Array(-1..<(ids.count - 1))
        var alive = [Bool](repeating: true, count: ids.count)
        var heap = MergeHeap()
        for i in 0..<(ids.count - 1) {
            if let m = merges[Self.key(ids[i], ids[i + 1])] { heap.push(rank: m.rank, position: i) }
        }
        while let (rank, pos) = heap.pop() {
            let right = next[pos]
            // Skip entries made stale by an earlier merge: the pair at `pos` changed.
            guard alive[pos], right >= 0, let m = merges[Self.key(ids[pos], ids[right])], m.rank == rank else { continue }
            ids[pos] = m.result
            alive[right] = false
            next[pos] = next[right]
            if next[pos] >= 0 { prev[next[pos]] = pos }
            if prev[pos] >= 0, let l = merges[Self.key(ids[prev[pos]], ids[pos])] { heap.push(rank: l.rank, position: prev[pos]) }
            if next[pos] >= 0, let r = merges[Self.key(ids[pos], ids[next[pos]])] { heap.push(rank: r.rank, position: pos) }
        }
        var result: [Int32] = []
        var i = 0
        while i >= 0 {
            result.append(ids[i])
            i = next[i]
        }
        return result
    }
}

/// A binary min-heap of (rank, position), ordered by rank then position.
private struct MergeHeap {
    private var items: [(rank: Int32, position: Int)] = []

    @inline(__always) private static func less(_ a: (rank: Int32, position: Int), _ b: (rank: Int32, position: Int)) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.position < b.position
    }

    mutating func push(rank: Int32, position: Int) {
        items.append((rank, position))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (Int32, Int)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < items.count && Self.less(items[l], items[smallest]) { smallest = l }
                if r < items.count && Self.less(items[r], items[smallest]) { smallest = r }
                if smallest == i { break }
                items.swapAt(i, smallest)
                i = smallest
            }
        }
        return (top.rank, top.position)
    }
}
