import Compute
import Testing

@testable import Models

/// The regex engine on its own, and the hand-written split matchers against it.
@Suite struct TokenRegexTests {
    static func pieces(_ regex: TokenRegex, _ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return regex.matches(in: scalars, bounds: 0..<scalars.count).map { r in
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[r])
            return String(s)
        }
    }

    /// The hand-written matchers give the same pieces as the general engine on random text that mixes
    /// every class the patterns distinguish.
    @Test(arguments: [KnownSplitPattern.gpt2Pattern, KnownSplitPattern.llama3Pattern, KnownSplitPattern.qwen2Pattern])
    func handWrittenMatchersAgreeWithTheEngine(pattern: String) throws {
        let regex = try TokenRegex(pattern)
        let known = try #require(KnownSplitPattern(pattern: pattern))
        var rng = SplitMix64(seed: 3)
        let alphabet = Array("aZé日😀 \t\n\r\u{A0}\u{3000}'sStTrReEvVmMlLdD\u{17F}\u{212A}0١②Ⅻ.,!?-_()\u{301}\u{200B}")
        for _ in 0..<2000 {
            let scalars = (0..<Int.random(in: 0...24, using: &rng)).flatMap { _ in alphabet.randomElement(using: &rng)!.unicodeScalars }
            let expected = regex.matches(in: scalars, bounds: 0..<scalars.count)
            let got = known.matches(in: scalars, bounds: 0..<scalars.count)
            #expect(got == expected, "\(String(String.UnicodeScalarView(scalars)).debugDescription)")
        }
    }

    @Test func leftmostFirstAlternationAndGreedyBacktracking() throws {
        #expect(Self.pieces(try TokenRegex("a|ab"), "abab") == ["a", "a"])
        #expect(Self.pieces(try TokenRegex("ab|a"), "abab") == ["ab", "ab"])
        #expect(Self.pieces(try TokenRegex(#"\s+(?!\S)|\s+"#), "a   b  ") == ["  ", " ", "  "])
        #expect(Self.pieces(try TokenRegex("a.*b"), "xaxbxbx") == ["axbxb"])
        #expect(Self.pieces(try TokenRegex("a.*?b"), "xaxbxbx") == ["axb"])
        #expect(Self.pieces(try TokenRegex(#"\d{2,3}"#), "1234567") == ["123", "456"])
        #expect(Self.pieces(try TokenRegex(#"\d{2,3}?"#), "12345") == ["12", "34"])
        #expect(Self.pieces(try TokenRegex(#"\d{2}"#), "12345") == ["12", "34"])
        #expect(Self.pieces(try TokenRegex(#"x{,2}y"#), "xxxy") == ["xxy"])
        #expect(Self.pieces(try TokenRegex("a{x"), "a{x") == ["a{x"])  // `{` not a quantifier is literal
        #expect(Self.pieces(try TokenRegex("(?:ab)+c"), "ababcabc") == ["ababc", "abc"])
        #expect(Self.pieces(try TokenRegex("b(?=c)"), "bbcb") == ["b"])
        #expect(Self.pieces(try TokenRegex("(a*)*b"), "aab") == ["aab"])  // an empty loop turn ends the loop
        #expect(Self.pieces(try TokenRegex("x*"), "ab").count == 3)  // empty matches move on by one
    }

    @Test func classesPropertiesAndCaseFolding() throws {
        #expect(Self.pieces(try TokenRegex(#"\p{L}+"#), "héllo, 世界 42") == ["héllo", "世界"])
        #expect(Self.pieces(try TokenRegex(#"\p{Lu}\p{Ll}*"#), "HelloWorldX") == ["Hello", "World", "X"])
        #expect(Self.pieces(try TokenRegex(#"\P{L}+"#), "ab12 cd") == ["12 "])
        #expect(Self.pieces(try TokenRegex(#"[^\s\p{L}]+"#), "a.b,, c!") == [".", ",,", "!"])
        #expect(Self.pieces(try TokenRegex(#"[a-c\d]+"#), "abcdx123") == ["abc", "123"])
        #expect(Self.pieces(try TokenRegex(#"[\-.]"#), "a-b.c") == ["-", "."])
        #expect(Self.pieces(try TokenRegex(#"\w+"#), "snake_case é1 !") == ["snake_case", "é1"])
        #expect(Self.pieces(try TokenRegex(#"\s"#), "a\u{3000}b\u{A0}c\td") == ["\u{3000}", "\u{A0}", "\t"])
        #expect(Self.pieces(try TokenRegex("(?i:'s|'ll)"), "'S 'Ll '\u{17F}") == ["'S", "'Ll", "'\u{17F}"])
        #expect(Self.pieces(try TokenRegex("(?i)[a-c]+"), "xABcx") == ["ABc"])
        #expect(Self.pieces(try TokenRegex("a(?i:b)c"), "aBc aBC abc") == ["aBc", "abc"])
        #expect(Self.pieces(try TokenRegex(#"\x41\u00e9\."#), "Aé. Aéx") == ["Aé."])
        #expect(Self.pieces(try TokenRegex("^a|b$"), "aab") == ["a", "b"])
    }

    @Test(arguments: [
        ("(?<=a)b", "lookbehind"), (#"(a)\1"#, "\\1"), ("a++", "possessive"), (#"\p{Han}"#, "Han"),
        ("(a", "missing ')'"), ("a)", "unbalanced"), ("[a", "missing ']'"), ("*a", "nothing to repeat"),
        ("[[:alpha:]]", "POSIX"), ("a{2000}", "1000"), (#"\b"#, "\\b"), ("(?x)a", "group"),
    ])
    func unsupportedSyntaxIsRefused(pattern: String, message: String) {
        #expect { try TokenRegex(pattern) } throws: {
            ($0 as? TokenizerError)?.kind == .unsupported && "\($0)".contains(message) && "\($0)".contains("regex")
        }
    }
}
