import Foundation
import Models
import Testing

/// The interpreter against jinja2 itself: each template below was rendered by jinja2 3.1 in the
/// environment transformers builds for chat templates (`ImmutableSandboxedEnvironment`,
/// `trim_blocks`, `lstrip_blocks`, loop controls, its `tojson`, `raise_exception`, and a
/// `strftime_now` fixed at 2024-07-26 10:30), and the expected text or error message is what it gave.
@Suite struct ChatTemplateInterpreterTests {
    struct Unit: CustomTestStringConvertible, Sendable {
        var name: String
        var source: String
        var context: String
        var text: String?
        var error: String?
        init(_ name: String, _ source: String, context: String, text: String) {
            (self.name, self.source, self.context, self.text, self.error) = (name, source, context, text, nil)
        }
        init(_ name: String, _ source: String, context: String, error: String) {
            (self.name, self.source, self.context, self.text, self.error) = (name, source, context, nil, error)
        }
        var testDescription: String { name }
    }

    /// 2024-07-26 10:30 in the local time zone, as the reference's `strftime_now`.
    static let fixedNow: @Sendable () -> Date = {
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute) = (2024, 7, 26, 10, 30)
        return Calendar.current.date(from: c)!
    }

    static func render(_ unit: Unit) throws -> String {
        let template = try ChatTemplate(source: unit.source)
        let context = try JSONValue.parse(Array(unit.context.utf8))
        var extra: [String: JSONValue] = [:]
        for (k, v) in context.objectMembers ?? [] where !["messages", "tools", "add_generation_prompt"].contains(k) { extra[k] = v }
        return try template.render(
            messages: context["messages"]?.arrayValue ?? [], tools: context["tools"]?.arrayValue,
            addGenerationPrompt: context["add_generation_prompt"]?.boolValue ?? false, extra: extra, now: fixedNow)
    }

    @Test(arguments: units)
    func rendersLikeJinja2(unit: Unit) throws {
        if let expected = unit.text {
            let rendered = try Self.render(unit)
            #expect(rendered == expected)
        } else {
            do {
                let text = try Self.render(unit)
                Issue.record("rendered \(text.debugDescription), jinja2 failed with \(unit.error ?? "")")
            } catch let error as ChatTemplateError {
                #expect(error.message == unit.error)
            }
        }
    }

    @Test(arguments: syntaxErrors)
    func syntaxErrorsNameTheLine(name: String, source: String, line: Int) {
        do {
            _ = try ChatTemplate(source: source)
            Issue.record("\(name): parsed")
        } catch {
            guard case .syntax(_, let l, let column) = error else { Issue.record("\(error)"); return }
            #expect(l == line, "\(name): \(error)")
            #expect(column >= 1)
            #expect(error.description.contains("line \(line)"))
        }
    }

    @Test func raiseExceptionCarriesTheTemplatesMessage() throws {
        let template = try ChatTemplate(source: "{{ raise_exception('Only user and assistant roles are supported!') }}")
        #expect(throws: ChatTemplateError.raised("Only user and assistant roles are supported!")) {
            try template.render(messages: [])
        }
    }

    @Test func parsesOnceRendersManyTimes() throws {
        let template = try ChatTemplate(source: "{% for m in messages %}{{ m.content }}{% endfor %}")
        for n in 0..<3 {
            let messages = (0...n).map { JSONValue.object([("content", .string("\($0)"))]) }
            #expect(try template.render(messages: messages) == (0...n).map(String.init).joined())
        }
    }

    static let units: [Unit] = [
        Unit("text", "hello", context: "{}", text: "hello"),
        Unit("trailing newline dropped", "a\n", context: "{}", text: "a"),
        Unit("trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", context: "{}", text: "yes\nend"),
        Unit("lstrip_blocks", "  {% if true %}\n  x\n  {% endif %}\n", context: "{}", text: "  x\n"),
        Unit("lstrip only at line start", "a {% if true %}b{% endif %} c", context: "{}", text: "a b c"),
        Unit("plus disables lstrip", "  {%+ if true %}x{% endif %}", context: "{}", text: "  x"),
        Unit("plus disables trim", "{% if true +%}\nx{% endif %}", context: "{}", text: "\nx"),
        Unit("minus both sides", "a  \n {%- if true -%} \n b {{- ' c ' -}} \n d {%- endif %}", context: "{}", text: "ab c d"),
        Unit("variable no lstrip", "  {{ 'x' }}\n  y", context: "{}", text: "  x\n  y"),
        Unit("comment", "a {# hidden #}\nb\n  {# c #}\nd {#- x -#}  e", context: "{}", text: "a b\nde"),
        Unit("raw", "{% raw %}{{ not parsed }}{% endraw %}!", context: "{}", text: "{{ not parsed }}!"),
        Unit("strings", "{{ 'a\\'b' }}|{{ \"q\\\"t\" }}|{{ 'tab\\tnl\\nuni\\u00e9' }}|{{ 'x' 'y' }}", context: "{}", text: "a'b|q\"t|tab\tnl\nunié|xy"),
        Unit("numbers", "{{ 1 }} {{ 1.5 }} {{ 1e3 }} {{ 10/4 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2**10 }} {{ 2**-1 }} {{ 1_000 }} {{ 0.1+0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.00001 }} {{ 3 * 1.0 }}", context: "{}", text: "1 1.5 1000.0 2.5 3 -4 2 -2 1024 0.5 1000 0.30000000000000004 1e+16 1000000000000000.0 1e-05 3.0"),
        Unit("python printing", "{{ [1, 'a', none, true, false, 1.0, (1,), (1, 2), {'k': [1]}] }} {{ None }} {{ True }} {{ {} }} {{ [] }} {{ () }} {{ [\"it's\"] }} {{ ['a\\nb'] }}", context: "{}", text: "[1, 'a', None, True, False, 1.0, (1,), (1, 2), {'k': [1]}] None True {} [] () [\"it's\"] ['a\\nb']"),
        Unit("undefined prints empty", "[{{ nothing }}][{{ d.missing }}]", context: "{\"d\": {}}", text: "[][]"),
        Unit("undefined truthiness", "{{ 'y' if not nothing else 'n' }}{{ nothing is defined }}{{ nothing is undefined }}{{ (nothing|length) }}", context: "{}", text: "yFalseTrue0"),
        Unit("attr and item", "{{ m.role }} {{ m['content'] }} {{ l[0] }} {{ l[-1] }} {{ l.0 }} {{ m.get('role') }} {{ m.get('x', 'dflt') }} {{ m.get('x') }}", context: "{\"m\": {\"role\": \"user\", \"content\": \"c\"}, \"l\": [1, 2, 3]}", text: "user c 1 3 1 user dflt None"),
        Unit("missing index", "[{{ l[9] }}]", context: "{\"l\": [1]}", text: "[]"),
        Unit("slices", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ s[1:3] }} {{ s[::-1] }} {{ l[-2:] }} {{ l[5:] }}", context: "{\"l\": [1, 2, 3, 4], \"s\": \"hello\"}", text: "[2, 3, 4] [1, 2, 3] [4, 3, 2, 1] [1, 3] el olleh [3, 4] []"),
        Unit("in and not in", "{{ 'a' in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 3 not in [1] }} {{ 'x' in nothing }}", context: "{}", text: "True True True True False"),
        Unit("comparisons", "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 1 != 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ [1,2] < [1,3] }} {{ true == 1 }}", context: "{}", text: "True False True True True True False True True"),
        Unit("logic returns operands", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }} {{ none or [] }} {{ not 0 }}", context: "{}", text: "x b  [] True"),
        Unit("concat and plus", "{{ 'a' ~ 1 ~ none ~ nothing }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 'ab' * 2 }} {{ 2 * [0] }}", context: "{}", text: "a1None ab [1, 2] abab [0, 0]"),
        Unit("conditional expr", "{{ 'a' if true else 'b' }}{{ 'a' if false else 'b' }}[{{ 'a' if false }}]{{ 1 if 0 else 2 if 0 else 3 }}", context: "{}", text: "ab[]3"),
        Unit("unary", "{{ -1 }} {{ -(2+3) }} {{ +4 }} {{ -x|abs }} {{ not true and false }}", context: "{\"x\": 3}", text: "-1 -5 4 3 False"),
        Unit("filter precedence", "{{ 'a' + ' b '|trim }}|{{ ('a' + ' b ')|trim }}|{{ -3|abs }}", context: "{}", text: "ab|a b|3"),
        Unit("if elif else", "{% for x in [1,2,3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %},{% endfor %}", context: "{}", text: "one,two,many,"),
        Unit("for loop vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", context: "{}", text: "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;"),
        Unit("for prev next", "{% for x in [1,2,3] %}{{ loop.previtem|default('-') }}{{ x }}{{ loop.nextitem|default('-') }} {% endfor %}", context: "{}", text: "-12 123 23- "),
        Unit("for cycle", "{% for x in range(4) %}{{ loop.cycle('a','b') }}{% endfor %}", context: "{}", text: "abab"),
        Unit("for else", "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in [1] %}x{% else %}empty{% endfor %}", context: "{}", text: "emptyx"),
        Unit("for filter", "{% for x in range(10) if x is odd %}{{ x }}{{ '/' ~ loop.length if loop.last }},{% endfor %}", context: "{}", text: "1,3,5,7,9/5,"),
        Unit("for unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for a, b in [[1,2],[3,4]] %}{{ a+b }}{% endfor %}", context: "{\"d\": {\"z\": 1, \"a\": 2}}", text: "z=1;a=2;za37"),
        Unit("nested loops", "{% for a in [1,2] %}{% for b in [1,2] %}{{ loop.index }}{{ a }}{% endfor %}{{ loop.index }}|{% endfor %}", context: "{}", text: "11211|12222|"),
        Unit("break continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", context: "{}", text: "0134"),
        Unit("set scoping", "{% set x = 1 %}{% for i in [1,2] %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}{% if true %}{% set y = 5 %}{% endif %}{{ y }}", context: "{}", text: "2215"),
        Unit("namespace", "{% set ns = namespace(count=0, found=false) %}{% for i in range(3) %}{% set ns.count = ns.count + i %}{% set ns.found = true %}{% endfor %}{{ ns.count }} {{ ns.found }}", context: "{}", text: "3 True"),
        Unit("set tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, %}{{ t }}", context: "{}", text: "12(1,)"),
        Unit("block set", "{% set body %}\n  hi {{ 1 + 1 }}\n{% endset %}[{{ body }}]{% set up | upper %}abc{% endset %}{{ up }}", context: "{}", text: "[  hi 2\n]ABC"),
        Unit("macro", "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }}", context: "{}", text: "Hello a! Hello b? Hello c."),
        Unit("macro scoping", "{% set g = 'G' %}{% macro m(x) %}{% set g = x %}{{ g }}{% endmacro %}{{ m('L') }}{{ g }}", context: "{}", text: "LG"),
        Unit("macro recursion", "{% macro render(v) %}{% if v is mapping %}{% for k, x in v.items() %}{{ k }}:{{ render(x) }};{% endfor %}{% else %}{{ v }}{% endif %}{% endmacro %}{{ render({'a': {'b': 1}, 'c': 2}) }}", context: "{}", text: "a:b:1;;c:2;"),
        Unit("call block", "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inside{% endcall %}", context: "{}", text: "<inside>"),
        Unit("filter block", "{% filter upper %}shout {{ 'x' }}{% endfilter %}", context: "{}", text: "SHOUT X"),
        Unit("tests", "{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is number }}{{ 1.5 is number }}{{ 1 is integer }}{{ 1.5 is integer }}{{ true is integer }}{{ [] is sequence }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ true is boolean }}{{ 1 is boolean }}{{ 2 is equalto 2 }}{{ 2 is eq(3) }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ x is not defined }}{{ 1.0 is float }}{{ none is sameas none }}", context: "{}", text: "TrueTrueTrueTrueTrueTrueTrueTrueFalseFalseTrueTrueFalseTrueTrueFalseTrueFalseTrueTrueTrueTrueTrueTrue"),
        Unit("string methods", "{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'a b  c'.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x','c')) }}|{{ 'aBc'.upper() }}{{ 'aBc'.lower() }}|{{ \"they're bill's\".title() }}|{{ 'aaa'.replace('a','b',2) }}|{{ 'hello'.capitalize() }}|{{ ', '.join(['a','b']) }}|{{ 'abcb'.find('b') }}{{ 'abcb'.rfind('b') }}{{ 'abc'.count('b') }}|{{ 'a\\nb'.splitlines() }}", context: "{}", text: "a b|a|a|a|['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b c']|True|True|ABCabc|They'Re Bill'S|bba|Hello|a, b|131|['a', 'b']"),
        Unit("dict methods", "{{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }}", context: "{\"d\": {\"b\": 1, \"a\": [2]}}", text: "['b', 'a'] [1, [2]] [('b', 1), ('a', [2])]"),
        Unit("key named like method", "{{ d['items'] }} {{ d.get('keys') }}", context: "{\"d\": {\"items\": 5, \"keys\": 6}}", text: "5 6"),
        Unit("filters basic", "{{ '  x '|trim }}|{{ 'xaxx'|trim('x') }}|{{ [1,2]|length }}{{ 'abc'|count }}{{ {'a':1}|length }}|{{ 'aB'|upper }}{{ 'aB'|lower }}|{{ 'hELLO world'|capitalize }}|{{ 'hello wORLD-x (y'|title }}|{{ [3,4]|first }}{{ [3,4]|last }}{{ 'ab'|first }}|{{ [1,'a']|join(', ') }}|{{ nothing|default('d') }}{{ ''|default('d', true) }}{{ ''|d('e') }}{{ 0|default(5) }}|{{ 'ab'|list }}|{{ 'aab'|replace('a','c') }}|{{ 1|string ~ 'x' }}|{{ '42'|int + 1 }}{{ 'x'|int }}{{ 'x'|int(7) }}{{ 3.9|int }}|{{ '1.5'|float }}{{ 2|float }}|{{ 'x'|safe }}|{{ -3|abs }}{{ -2.5|abs }}|{{ 2.567|round(2) }}{{ 2.5|round }}{{ 2.1|round(0, 'ceil') }}", context: "{}", text: "x|a|231|ABab|Hello world|Hello World-X (Y|34a|1, a|dd0|['a', 'b']|ccb|1x|43073|1.52.0|x|32.5|2.572.03.0"),
        Unit("filters sequences", "{{ [3,1,2]|sort }}{{ [3,1,2]|sort(reverse=true) }}{{ ['b','A','a']|sort }}{{ ['b','A','a']|sort(case_sensitive=true) }}{{ [1,2,1,3]|unique|list }}{{ ['a','A','b']|unique|list }}{{ [1,2,3]|reverse|list }}{{ 'abc'|reverse }}{{ [1,2,3]|sum }}{{ [3,1]|min }}{{ [3,1]|max }}{{ range(5)|batch(2)|list }}", context: "{}", text: "[1, 2, 3][3, 2, 1]['A', 'a', 'b']['A', 'a', 'b'][1, 2, 3]['a', 'b'][3, 2, 1]cba613[[0, 1], [2, 3], [4]]"),
        Unit("filters attr", "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}|{{ ms|rejectattr('role', 'eq', 'user')|list|length }}|{{ ms|selectattr('extra')|list|length }}|{{ ms|selectattr('extra', 'defined')|list|length }}|{{ ms|map(attribute='role')|unique|list }}|{{ ['a','b']|map('upper')|list }}|{{ ms|map(attribute='nope', default='z')|first }}|{{ ms|sort(attribute='content')|map(attribute='content')|list }}|{{ [1,2,3,4]|select('odd')|list }}{{ [0,1,'']|select|list }}{{ [1,2]|reject('odd')|list }}", context: "{\"ms\": [{\"role\": \"user\", \"content\": \"b\"}, {\"role\": \"assistant\", \"content\": \"a\", \"extra\": 1}, {\"role\": \"user\", \"content\": \"c\"}]}", text: "b,c|1|1|1|['user', 'assistant']|['A', 'B']|z|['a', 'b', 'c']|[1, 3][1][2]"),
        Unit("items filter", "{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}{{ d|items|list }}{{ nothing|items|list }}{{ d|dictsort }}", context: "{\"d\": {\"b\": 1, \"a\": 2}}", text: "b1a2[('b', 1), ('a', 2)][][('a', 2), ('b', 1)]"),
        Unit("tojson", "{{ d|tojson }}\n{{ d|tojson(indent=2) }}\n{{ [1.0, 1e20, true, none, 'é\"\\\\\\n\\t\\u0001'] |tojson }}\n{{ d|tojson(sort_keys=true) }}\n{{ d|tojson(separators=(',', ':')) }}\n{{ {}|tojson(indent=4) }}{{ []|tojson }}{{ [[]]|tojson(indent=1) }}\n{{ 'x'|tojson }}{{ 5|tojson }}{{ (1,2)|tojson }}\n{{ {1: 'int key'}|tojson }}", context: "{\"d\": {\"z\": [1, {\"y\": null}], \"a\": \"ü\"}}", text: "{\"z\": [1, {\"y\": null}], \"a\": \"ü\"}\n{\n  \"z\": [\n    1,\n    {\n      \"y\": null\n    }\n  ],\n  \"a\": \"ü\"\n}\n[1.0, 1e+20, true, null, \"é\\\"\\\\\\n\\t\\u0001\"]\n{\"a\": \"ü\", \"z\": [1, {\"y\": null}]}\n{\"z\":[1,{\"y\":null}],\"a\":\"ü\"}\n{}[][\n []\n]\n\"x\"5[1, 2]\n{\"1\": \"int key\"}"),
        Unit("tojson indent string", "{{ d|tojson(indent='\\t') }}", context: "{\"d\": {\"a\": [1]}}", text: "{\n\t\"a\": [\n\t\t1\n\t]\n}"),
        Unit("indent filter", "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'x\\ny'|indent('> ') }}", context: "{}", text: "a\n    b\n\n    c|  a\n  b|a\n  \n  b|x\n> y"),
        Unit("range and dict", "{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ dict(a=1, b='x') }}{{ range(3, 0, -1)|list }}", context: "{}", text: "[0, 1, 2][1, 3, 5]{'a': 1, 'b': 'x'}[3, 2, 1]"),
        Unit("strftime_now", "{{ strftime_now('%d %b %Y') }}", context: "{}", text: "26 Jul 2024"),
        Unit("messages golden-like", "{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}", context: "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"Bye\"}], \"add_generation_prompt\": true}", text: "system:Be brief.\nuser:Hi\nassistant:Hello!\nuser:Bye\nassistant:"),
        Unit("tools none", "{{ tools }}{{ tools is defined }}{{ tools is none }}{{ documents is none }}", context: "{}", text: "NoneTrueTrueTrue"),
        Unit("percent format", "{{ '%s-%d' % ('a', 3) }}{{ '%s'|format('x') }}", context: "{}", text: "a-3x"),
        Unit("whitespace heavy", "{%- for m in messages -%}\n    {{- m.role -}}\n    {%- if not loop.last %}, {% endif -%}\n{%- endfor %}\n\n  {{ 'end' }}", context: "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"Bye\"}]}", text: "system, user, assistant, user\n  end"),
        Unit("unicode", "{{ 'héllo 日本'|upper }}{{ 'héllo 日本'|length }}{{ 'héllo'[1] }}{{ ['é'] }}", context: "{}", text: "HÉLLO 日本8é['é']"),
        Unit("escaped repr", "{{ ['\\x01', '\\u200b', 'tab\\t', \"both'\\\"\"] }}", context: "{}", text: "['\\x01', '\\u200b', 'tab\\t', 'both\\'\"']"),
        Unit("chained attr on missing message key", "{{ 'no tools' if not m.tool_calls else 'tools' }}", context: "{\"m\": {\"role\": \"user\"}}", text: "no tools"),
        Unit("equality of undefined", "{{ nothing == nothing }}{{ nothing == none }}{{ m.x != 'a' }}", context: "{\"m\": {}}", text: "TrueFalseTrue"),
        Unit("int key lookup", "{{ d[1] }}{{ d['1']|default('none') }}", context: "{\"d\": {\"1\": \"s\"}}", text: "s"),
        Unit("err raise", "{{ raise_exception('Bad role: ' + 'x') }}", context: "{}", error: "Bad role: x"),
        Unit("err attr of undefined", "{{ nothing.attr }}", context: "{}", error: "'nothing' is undefined"),
        Unit("err attr of missing key", "{{ m.tool_calls.name }}", context: "{\"m\": {}}", error: "'dict object' has no attribute 'tool_calls'"),
        Unit("err concat str list", "{{ 'a' + [1] }}", context: "{}", error: "can only concatenate str (not \"list\") to str"),
        Unit("err add int str", "{{ 1 + 'a' }}", context: "{}", error: "unsupported operand type(s) for +: 'int' and 'str'"),
        Unit("err concat list str", "{{ [1] + 'a' }}", context: "{}", error: "can only concatenate list (not \"str\") to list"),
        Unit("err undefined plus", "{{ nothing + 1 }}", context: "{}", error: "'nothing' is undefined"),
        Unit("err compare", "{{ 1 < 'a' }}", context: "{}", error: "'<' not supported between instances of 'int' and 'str'"),
        Unit("err tojson undefined", "{{ nothing|tojson }}", context: "{}", error: "Object of type Undefined is not JSON serializable"),
        Unit("err iterate int", "{% for x in 5 %}{% endfor %}", context: "{}", error: "'int' object is not iterable"),
        Unit("err len int", "{{ 5|length }}", context: "{}", error: "object of type 'int' has no len()"),
        Unit("err unsafe append", "{% set l = [] %}{{ l.append(1) }}", context: "{}", error: "access to attribute 'append' of 'list' object is unsafe."),
        Unit("err div zero", "{{ 1 / 0 }}", context: "{}", error: "division by zero"),
        Unit("err in int", "{{ 1 in 'abc' }}", context: "{}", error: "'in <string>' requires string as left operand, not int"),
        Unit("err assign non-namespace", "{% set d = {} %}{% set d.x = 1 %}", context: "{}", error: "cannot assign attribute on non-namespace object"),
        Unit("err call undefined", "{{ nothing() }}", context: "{}", error: "'nothing' is undefined"),
        Unit("err raise in loop", "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('Unknown role: ' ~ m.role) }}{% endif %}{% endfor %}", context: "{\"messages\": [{\"role\": \"user\"}, {\"role\": \"robot\"}]}", error: "Unknown role: robot"),
        Unit("lstrip tabs and comment lines", "a\n\t  {# c #}\n\t{% if true %}\n\tb\n\t{% endif %}\nc", context: "{}", text: "a\n\tb\nc"),
        Unit("minus on raw", "x  {%- raw -%}  {{ y }}  {%- endraw -%}  z", context: "{}", text: "x{{ y }}z"),
        Unit("variable minus newlines", "a\n\n{{- 'b' -}}\n\nc", context: "{}", text: "abc"),
        Unit("block at start no newline after", "{% if true %}x{% endif %}{% if true %}\n{% endif %}y", context: "{}", text: "xy"),
        Unit("trim_blocks only one newline", "{% if true %}\n\nx{% endif %}", context: "{}", text: "\nx"),
        Unit("comment trim newline", "{# a #}\n{# b -#}\n\nc", context: "{}", text: "c"),
        Unit("nested namespace list append", "{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set ns.items = ns.items + [i * 2] %}{% endfor %}{{ ns.items }}", context: "{}", text: "[0, 2, 4]"),
        Unit("dict literal order and access", "{% set d = {'b': 1, 'a': {'c': [1, 2]}} %}{{ d }}{{ d.a.c[1] }}{{ d['a']['c'] | length }}", context: "{}", text: "{'b': 1, 'a': {'c': [1, 2]}}22"),
        Unit("conditional in filter arg", "{{ [1,2,3] | join(', ' if true else '-') }}", context: "{}", text: "1, 2, 3"),
        Unit("is test chained with and", "{{ x is defined and x is string and x | length > 2 }}", context: "{\"x\": \"abc\"}", text: "True"),
        Unit("default none", "{{ (nothing | default(none)) is none }}", context: "{}", text: "True"),
        Unit("not in precedence", "{{ not 'a' in ['b'] }} {{ 'a' not in ['a'] }}", context: "{}", text: "True False"),
        Unit("string escapes in output", "{{ \"line1\\nline2\\ttab\\\\back\" }}", context: "{}", text: "line1\nline2\ttab\\back"),
        Unit("int float arithmetic prints", "{{ 3 / 3 }} {{ 2 * 2.5 }} {{ 7 // 2.0 }} {{ 2 ** 0.5 }} {{ 10 % 3.5 }} {{ 1e100 }} {{ -0.0 }} {{ 123456789.123 }}", context: "{}", text: "1.0 5.0 3.0 1.4142135623730951 3.0 1e+100 -0.0 123456789.123"),
        Unit("loop over dict items with loop vars", "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ loop.index }}{{ k }}{{ v }}{% if not loop.last %},{% endif %}{% endfor %}", context: "{}", text: "1a1,2b2"),
        Unit("macro defaults referencing", "{% macro f(a, b=a ~ '!') %}{{ a }}{{ b }}{% endmacro %}{{ f('x') }}", context: "{}", text: "xx!"),
        Unit("macro missing arg", "{% macro f(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ f('x') }}", context: "{}", text: "[x][]"),
        Unit("caller with args-less", "{% macro list(items) %}{% for i in items %}{{ caller() }}{{ i }};{% endfor %}{% endmacro %}{% call list([1,2]) %}*{% endcall %}", context: "{}", text: "*1;*2;"),
        Unit("attribute on none", "[{{ none.x }}]", context: "{}", text: "[]"),
        Unit("getattr integer", "{{ l.1 }}{{ t[0] }}", context: "{\"l\": [5, 6], \"t\": \"ab\"}", text: "6a"),
        Unit("join on dicts attribute", "{{ users | join(', ', attribute='name') }}", context: "{\"users\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}", text: "a, b"),
        Unit("map then join", "{{ tools | map(attribute='function') | map(attribute='name') | join(',') }}", context: "{\"tools\": [{\"function\": {\"name\": \"f1\"}}, {\"function\": {\"name\": \"f2\"}}]}", text: "f1,f2"),
        Unit("selectattr not none", "{{ ms | selectattr('content', 'none') | list | length }}{{ ms | rejectattr('content', 'none') | list | length }}", context: "{\"ms\": [{\"content\": null}, {\"content\": \"x\"}]}", text: "11"),
        Unit("length of undefined attr", "{{ m.tool_calls | length }}", context: "{\"m\": {}}", text: "0"),
        Unit("tojson nested unicode indent", "{{ x | tojson(indent=2) }}", context: "{\"x\": {\"k\": [\"日本\", {\"e\": []}], \"n\": null, \"f\": 1.5, \"b\": false}}", text: "{\n  \"k\": [\n    \"日本\",\n    {\n      \"e\": []\n    }\n  ],\n  \"n\": null,\n  \"f\": 1.5,\n  \"b\": false\n}"),
        Unit("string comparison", "{{ 'abc' < 'abd' }}{{ 'B' < 'a' }}{{ 'é' > 'z' }}", context: "{}", text: "TrueTrueTrue"),
        Unit("list equality", "{{ [1, [2]] == [1, [2]] }}{{ {'a': 1} == {'a': 1.0} }}{{ (1, 2) == [1, 2] }}", context: "{}", text: "TrueTrueFalse"),
        Unit("sum of floats", "{{ [0.1, 0.2] | sum }} {{ [1, 2] | sum(start=10) }}", context: "{}", text: "0.30000000000000004 13"),
        Unit("items of message", "{% for k, v in m | items %}{{ k }}={{ v }} {% endfor %}", context: "{\"m\": {\"role\": \"user\", \"content\": \"c\", \"name\": \"n\"}}", text: "role=user content=c name=n "),
        Unit("first last of string", "{{ 'abc' | first }}{{ 'abc' | last }}{{ [] | first is undefined }}", context: "{}", text: "acTrue"),
        Unit("nested ternary and filters", "{{ (m.content if m.content is string else m.content | map(attribute='text') | join) | trim }}", context: "{\"m\": {\"content\": [{\"text\": \" a\"}, {\"text\": \"b \"}]}}", text: "ab"),
        Unit("wordcount center", "{{ 'a b  c' | wordcount }}[{{ 'ab' | center(6) }}]", context: "{}", text: "3[  ab  ]"),
        Unit("capitalize title unicode", "{{ 'élan vital' | title }} {{ 'ÉLAN' | capitalize }}", context: "{}", text: "Élan Vital Élan"),
        Unit("split maxsplit", "{{ 'a b c d'.split(' ', 2) }} {{ '  a  b  '.split(None, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  a  b  c '.rsplit(None, 1) }} {{ ' x  y '.split(maxsplit=0) }}", context: "{}", text: "['a', 'b', 'c d'] ['a', 'b  '] ['a,b', 'c'] ['  a  b', 'c'] ['x  y ']"),
        Unit("replace count", "{{ 'aaaa'.replace('a', 'b', 0) }}{{ 'aaaa' | replace('a', 'b', 3) }}", context: "{}", text: "aaaabbba"),
        Unit("strip chars", "{{ '<<x>>'.strip('<>') }}{{ '\\n\\nx\\n'.strip('\\n') }}", context: "{}", text: "xx"),
        Unit("err unknown test", "{% if x is frobnicated %}{% endif %}", context: "{}", error: "No test named 'frobnicated' found."),
        Unit("err tuple unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", context: "{}", error: "too many values to unpack (expected 2)"),
        Unit("err tojson namespace", "{{ namespace(a=1) | tojson }}", context: "{}", error: "Object of type Namespace is not JSON serializable"),
        Unit("err int not callable", "{{ 1() }}", context: "{}", error: "'int' object is not callable"),
        Unit("err undefined attr in condition", "{% if m.a.b %}x{% endif %}", context: "{\"m\": {}}", error: "'dict object' has no attribute 'a'"),
        Unit("err subscript undefined", "{{ nothing[0] }}", context: "{}", error: "'nothing' is undefined"),
        Unit("err compare none", "{{ none < 1 }}", context: "{}", error: "'<' not supported between instances of 'NoneType' and 'int'"),
        Unit("err sort mixed", "{{ [1, 'a'] | sort }}", context: "{}", error: "'<' not supported between instances of 'str' and 'int'"),
        Unit("tojson ensure_ascii", "{{ x | tojson(ensure_ascii=true) }}", context: "{\"x\": {\"k\": \"é日😀\", \"n\": 1}}", text: "{\"k\": \"\\u00e9\\u65e5\\ud83d\\ude00\", \"n\": 1}"),
        Unit("escape filter", "{{ '<a href=\"x\">&\\'</a>' | e }}{{ 5 | escape }}", context: "{}", text: "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;5"),
        Unit("attr filter", "{{ (d | attr('items'))() | list }}[{{ d | attr('k') }}]{% set ns = namespace(v=3) %}{{ ns | attr('v') }}", context: "{\"d\": {\"k\": 1}}", text: "[('k', 1)][]3"),
        Unit("round of int stays int", "{{ v.i | round }} {{ v.b | round }} {{ v.f | round }}", context: "{\"v\": {\"i\": 3, \"b\": true, \"f\": 2.5}}", text: "3 1 2.0"),
        Unit("select of falsy is empty", "{{ v.f | select | list }}{{ v.n | map('upper') | list }}{{ v.z | selectattr('a') | list }}", context: "{\"v\": {\"f\": false, \"n\": null, \"z\": 0}}", text: "[][][]"),
        Unit("odd even of floats", "{{ v.a is odd }}{{ v.b is even }}{{ v.c is odd }}{{ v.d is divisibleby 3 }}", context: "{\"v\": {\"a\": 3.0, \"b\": 0.1, \"c\": -3, \"d\": 9.0}}", text: "TrueFalseTrueTrue"),
        Unit("err indent non-string", "{{ v.t | indent(2) }}", context: "{\"v\": {\"t\": true}}", error: "unsupported operand type(s) for +=: 'bool' and 'str'"),
        Unit("err int of undefined", "{{ v.missing | int }}", context: "{\"v\": {}}", error: "'dict object' has no attribute 'missing'"),
        Unit("err unhashable in dict", "{{ v.l in v.d }}", context: "{\"v\": {\"l\": [1], \"d\": {\"a\": 1}}}", error: "unhashable type: 'list'"),
        Unit("err slice of bool", "{{ v.t[1:] }}", context: "{\"v\": {\"t\": true}}", error: "'bool' object is not subscriptable"),
    ]

    static let syntaxErrors: [(String, String, line: Int)] = [
        ("unclosed if", "a\n{% if x %}b", line: 2),
        ("unknown tag", "{% frobnicate %}", line: 1),
        ("bad expression", "line1\n{{ 1 + }}", line: 2),
        ("unclosed variable", "{{ x", line: 1),
        ("unclosed string", "{{ 'abc }}", line: 1),
        ("unexpected endfor", "{% endfor %}", line: 1),
        ("unclosed comment", "{# no end", line: 1),
        ("unclosed for", "{% for x in y %}\n\nabc", line: 2),
        ("else without if", "x\n{% else %}", line: 2),
        ("bad set", "{% set = 1 %}", line: 1),
        ("unknown filter", "a\n{{ 1 | frobnicate }}", line: 2),
    ]
}

/// Templates come from model directories: pathological ones fail with an error, never a trap or a
/// runaway allocation.
@Suite struct ChatTemplateLimitsTests {
    @Test func deepNestingIsASyntaxError() {
        let source = "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}"
        #expect(throws: ChatTemplateError.self) { try ChatTemplate(source: source) }
        let blocks = String(repeating: "{% if true %}", count: 5000) + String(repeating: "{% endif %}", count: 5000)
        #expect(throws: ChatTemplateError.self) { try ChatTemplate(source: blocks) }
    }

    @Test(arguments: [
        "{{ 2 ** 100000 }}", "{{ 'a' * 1000000000000 }}", "{{ [0] * 1000000000000 }}",
        "{{ -(-9223372036854775807 - 1) }}", "{{ range(1000000) | list }}", "{{ 'x' | center(1000000000000) }}",
        "{{ '1' | int(base=99) }}", "{{ [1, 2][::-9223372036854775807] }}", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    ])
    func runawayEvaluationIsAnError(source: String) throws {
        let template = try ChatTemplate(source: source)
        #expect(throws: ChatTemplateError.self) { try template.render(messages: []) }
    }

    @Test func oneToAHugePowerIsStillComputed() throws {
        // Exponentiation by squaring: no loop of 10^12 steps for a base of 1.
        #expect(try ChatTemplate(source: "{{ 1 ** 1000000000000 }}x").render(messages: []) == "1x")
    }
}
