import CMyHTML
import Foundation

/// The main content of a web page as text: its title, then its headings, paragraphs, list items, table cells,
/// code and quotes, without navigation, headers, footers, sidebars, banners, forms, scripts and styles.
///
/// The page is parsed by an HTML5 parser (MyHTML, `HTMLDocument`), as a browser would parse it. Then, in order:
/// 1. Elements that are never content are dropped whole: scripts, styles, forms and their controls, `nav`,
///    `aside`, `footer`, and any element whose `id`, `class` or `role` names boilerplate (navigation, menus,
///    cookie and consent banners, sharing, related links, comments unless asked for, advertising) — unless it
///    holds half the page's text (a theme's "main-menu" wrapper around everything).
/// 2. The structural root is the page's `article` or `main` (or `role="main"`) when one holds most of the page's
///    remaining text, else the body. Under it, the first element named as an article's container
///    ("entry-content", `itemprop="articleBody"`: `ContentContainer`) is the content root, when its text is not
///    much shorter than the structural root's; else the structural root is.
/// 3. The text under it is cut into blocks at block-level elements. A list or table that is mostly link text (a
///    menu, a list of related articles) is dropped whole, with a short heading right before it ("Read also"); so
///    is a block that is mostly links (a tag cloud, "Back to the list"), unless it is one link that shows its
///    address (a reference). Where paragraphs make the page, short text loose in a container (a photo credit, an
///    "Advertisement" label) is dropped. A heading left titling nothing (last, followed by a heading of its level,
///    or by dropped links) goes. Whitespace, Unicode's spaces included, becomes one space.
/// 4. When that leaves under 500 characters, the page is extracted again without judging class and id names (site
///    builders wrap whole pages in names that usually mean boilerplate), and the result taken if it is more than
///    twice as long; when it still leaves under 250, the page's embedded state is read (`EmbeddedState`).
public struct ContentExtractor: Sendable {
    /// Whether comment sections are kept.
    public var includeComments = false
    /// A block whose share of link text is above this is dropped.
    public var maximumLinkDensity = 0.3
    /// Whether the text is Markdown (headings, lists, quotes, code fences, tables) rather than plain lines.
    public var markdown = false

    public init() {}

    /// The extracted page: its title, main text (one block per line), the language it declares and its date.
    public struct Page: Sendable {
        public let title: String?
        public let text: String
        /// The language the page declares (`<html lang>`, a content-language `<meta>`), as its primary subtag.
        public var language: String? = nil
        /// The publication date the page states (JSON-LD `datePublished`, `article:published_time` and similar
        /// `<meta>`, `<time datetime>`), as YYYY-MM-DD.
        public var date: String? = nil
    }

    /// When the visible text is shorter than this many characters (Unicode scalars), the page's embedded state is read too.
    public var embeddedStateThreshold = 250

    /// Extracts the main content of `html` (UTF-8).
    public func extract(html: String) -> Page { extract(html: html, readingState: true) }

    /// The deepest nesting of elements a page may have for its text to be extracted; a deeper page gives none. The
    /// tree walks below recurse, on threads of 1 MB stacks: pages nest a few dozen deep, and deeper markup is broken
    /// or hostile (`<div>` a hundred thousand times), which would overflow the stack (Chrome's parser stops nesting at
    /// 512).
    public static let maximumDepth = 256

    private func extract(html: String, readingState: Bool) -> Page {
        // A page nested far deeper than that gives no text either, and takes minutes to parse (`MarkupNesting`).
        guard !MarkupNesting.exceeds(4 * Self.maximumDepth, in: html) else { return Page(title: nil, text: "", language: nil, date: nil) }
        let document = HTMLDocument(html: html)
        // The nodes live as long as the document; it must outlive every use of them below.
        defer { withExtendedLifetime(document) {} }
        let root = document.root
        guard !Self.nests(root, deeperThan: Self.maximumDepth) else { return Page(title: nil, text: "", language: nil, date: nil) }
        let title = Self.find(root) { Self.tag($0) == HTMLTag.title }.map { Self.plainText($0) }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }
        let body = Self.find(root) { Self.tag($0) == HTMLTag.body } ?? root
        var text = mainText(body, Drops(byName: true, pageText: Self.visibleTextLength(body)))
        if text.unicodeScalars.count < fallbackThreshold {
            // Too little: the names may have misled (site builders put everything in "elementor-widget", Blogger
            // in "widget Blog"). Again without judging names, as trafilatura falls back to a plainer extractor.
            let plainer = mainText(body, Drops(byName: false, pageText: 0))
            if plainer.unicodeScalars.count > 2 * text.unicodeScalars.count { text = plainer }
        }
        if readingState, text.unicodeScalars.count < embeddedStateThreshold {
            // A page rendered by JavaScript: its text is in the state the scripts render from.
            let state = embeddedState(root).filter { !text.contains($0) }
            if !state.isEmpty { text = ([text].filter { !$0.isEmpty } + state).joined(separator: markdown ? "\n\n" : "\n") }
        }
        return Page(title: title, text: text, language: Self.declaredLanguage(root), date: Self.publicationDate(root))
    }

    /// The primary language subtag of `<html lang>` or a content-language `<meta>` ("de-DE" → "de").
    private static func declaredLanguage(_ root: HTMLNode) -> String? {
        var declared = find(root) { tag($0) == HTMLTag.html }.flatMap { attribute("lang", of: $0) ?? attribute("xml:lang", of: $0) }
        if declared == nil {
            declared = find(root) { tag($0) == HTMLTag.meta && attribute("http-equiv", of: $0)?.lowercased() == "content-language" }
                .flatMap { attribute("content", of: $0) }
        }
        guard let primary = declared?.split(whereSeparator: { $0 == "-" || $0 == "_" || $0 == "," }).first?
            .trimmingCharacters(in: .whitespaces).lowercased(), (2...3).contains(primary.count),
            primary.allSatisfy({ $0.isASCII && $0.isLetter }) else { return nil }
        return primary
    }

    /// `<meta>` names and properties that hold a publication date, most specific first.
    private static let dateMetas = ["article:published_time", "datepublished", "og:published_time", "publication_date",
                                    "pubdate", "dc.date.issued", "dc.date", "dcterms.date", "date", "sailthru.date"]

    /// The page's publication date as YYYY-MM-DD: JSON-LD `datePublished`, then a date `<meta>`, then the first
    /// `<time datetime>`.
    private static func publicationDate(_ root: HTMLNode) -> String? {
        var fromJSONLD: String?, fromMeta: [String: String] = [:], fromTime: String?
        visit(root) { node in
            switch tag(node) {
            case HTMLTag.script where attribute("type", of: node)?.lowercased() == "application/ld+json":
                if fromJSONLD == nil, let range = plainText(node).range(of: "\"datePublished\"") {
                    let rest = plainText(node)[range.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "\"" }
                    fromJSONLD = isoDate(String(rest.prefix(10)))
                }
            case HTMLTag.meta:
                let key = (attribute("property", of: node) ?? attribute("name", of: node) ?? attribute("itemprop", of: node))?.lowercased()
                if let key, dateMetas.contains(key), let content = attribute("content", of: node), let date = isoDate(content) {
                    fromMeta[key] = fromMeta[key] ?? date
                }
            case HTMLTag.time:
                if fromTime == nil, let value = attribute("datetime", of: node) { fromTime = isoDate(value) }
            default:
                break
            }
            return true
        }
        return fromJSONLD ?? dateMetas.lazy.compactMap { fromMeta[$0] }.first ?? fromTime
    }

    /// "2024-03-07T10:00:00Z" or "2024-03-07" → "2024-03-07"; anything else → nil.
    private static func isoDate(_ value: String) -> String? {
        let digits = Array(value.trimmingCharacters(in: .whitespaces).utf8.prefix(10))
        guard digits.count == 10, digits[4] == UInt8(ascii: "-"), digits[7] == UInt8(ascii: "-"),
              digits.enumerated().allSatisfy({ $0.offset == 4 || $0.offset == 7 || (48...57).contains($0.element) }),
              let month = Int(String(decoding: digits[5..<7], as: UTF8.self)), (1...12).contains(month),
              let day = Int(String(decoding: digits[8..<10], as: UTF8.self)), (1...31).contains(day) else { return nil }
        return String(decoding: digits, as: UTF8.self)
    }

    /// With less text than this (Unicode scalars), the page is extracted again without judging class and id names.
    public var fallbackThreshold = 500

    /// The share of the structural root's kept text (see `mainText`) under which the named container is passed
    /// over as too narrow: its lead paragraph, or the article itself, lies outside it.
    public var minimumContainerShare = 0.3

    /// With at least this many characters (bytes other than spaces) of paragraphs, short text loose in a container
    /// is dropped.
    public var minimumParagraphText = 750

    /// An element named as boilerplate that holds at least this share of the body's text is kept: it wraps the page.
    public var wrapperShare = 0.5

    /// The main text under `body`, with elements dropped as `drops` judges them: the text of the first element named
    /// as the article's container (most telling names first) that keeps two blocks or more and at least
    /// `minimumContainerShare` of what the page's `article`, `main` or body keeps (as trafilatura takes a plainer
    /// extractor's text when its own is under half as long), else the latter's.
    private func mainText(_ body: HTMLNode, _ drops: Drops) -> String {
        let structural = structuralRoot(in: body, drops)
        var kept = keptBlocks(structural, drops)
        let length = { (blocks: [Block]) in blocks.reduce(0) { $0 + $1.characters } }
        let structuralLength = length(kept)
        for container in namedContainers(in: structural, drops) {
            let inContainer = keptBlocks(container, drops)
            // One block is too little to be the article (a teaser named "post"), as trafilatura judges.
            if inContainer.count >= 2, Double(length(inContainer)) >= minimumContainerShare * Double(structuralLength) {
                kept = inContainer
                break
            }
        }
        return markdown ? Self.markdown(kept) : kept.map(\.trimmedText).joined(separator: "\n")
    }

    /// The blocks of text under `root` that are kept: not empty, not mostly links, no heading left titling nothing.
    private func keptBlocks(_ root: HTMLNode, _ drops: Drops) -> [Block] {
        var blocks: [Block] = []
        collect(root, into: &blocks, drops)
        let isEmpty = blocks.map { $0.trimmedText.isEmpty }
        var keep = blocks.indices.map { index in
            let block = blocks[index]
            guard !isEmpty[index] else { return false }
            let density = Double(block.linkCharacters) / Double(max(1, block.characters))
            // A block that is one link stays only when the link shows its address (a reference, not "Back to the list").
            let text = block.trimmedText
            let isReference = block.links == 1 && (text.contains("://") || text.hasPrefix("www."))
            return density <= maximumLinkDensity || isReference || block.characters > 300
        }
        // Short loose text (a photo credit, an "Advertisement" label, a byline in a div) is dropped when the
        // paragraphs make the page: as trafilatura takes a div's own text only when a page's paragraphs hold under
        // three times its minimum length.
        let paragraphText = blocks.indices.reduce(0) { $0 + (keep[$1] && blocks[$1].isParagraph ? blocks[$1].characters : 0) }
        if paragraphText >= minimumParagraphText {
            for index in blocks.indices where blocks[index].isLoose && blocks[index].characters < 100 { keep[index] = false }
        }
        // A short heading whose next text is dropped (the title of a teaser grid, of a list of links) goes with it.
        for index in blocks.indices where keep[index] && blocks[index].headingLevel >= 2 && blocks[index].characters <= 60 {
            if let next = blocks[(index + 1)...].indices.first(where: { !isEmpty[$0] }), !keep[next] { keep[index] = false }
        }
        var kept = blocks.indices.filter { keep[$0] }.map { blocks[$0] }
        // A heading with nothing after it titled something dropped ("Related posts" over a dropped teaser list).
        while kept.last?.isHeading == true { kept.removeLast() }
        // Likewise a heading whose section is empty: the next block is a heading of the same or a higher level.
        return kept.indices.filter { index in
            let level = kept[index].headingLevel
            guard level > 0, index + 1 < kept.count else { return true }
            let next = kept[index + 1].headingLevel
            return !(next > 0 && next <= level)
        }.map { kept[$0] }
    }

    /// The prose in the page's scripts (framework state, JSON-LD) and `noscript` elements.
    private func embeddedState(_ root: HTMLNode) -> [String] {
        var scripts: [EmbeddedState.Script] = [], noscripts: [String] = []
        Self.visit(root) { node in
            switch Self.tag(node) {
            case HTMLTag.script:
                scripts.append(EmbeddedState.Script(type: Self.attribute("type", of: node), id: Self.attribute("id", of: node),
                                                    text: Self.plainText(node)))
                return false
            case HTMLTag.noscript:
                noscripts.append(Self.plainText(node))
                return false
            default:
                return true
            }
        }
        return EmbeddedState().texts(scripts: scripts, noscripts: noscripts) { extract(html: $0, readingState: false).text }
    }

    // MARK: - Blocks

    /// A run of text between block boundaries, with how much of it is link text.
    private struct Block {
        var text = ""
        var characters = 0
        var linkCharacters = 0
        var links = 0
        /// The heading's level (1 for h1 … 6 for h6), 0 when the block is not a heading.
        var headingLevel = 0
        var isHeading: Bool { headingLevel > 0 }
        /// Whether the block is text loose in a container (a `div`'s own text), outside any paragraph, heading, list
        /// item, cell, quote or code.
        var isLoose = false
        /// Whether the block is a paragraph (`p`).
        var isParagraph = false

        /// How the block reads as Markdown.
        var shape = MarkdownShape()

        /// The text without whitespace at its ends. Outside code it holds no whitespace but single spaces
        /// (`squeezed`), so the ends are trimmed as bytes: Foundation's trimming, on every block, cost more than the
        /// parse.
        var trimmedText: String {
            if shape.isCode { return text.trimmingCharacters(in: .whitespacesAndNewlines) }
            let bytes = text.utf8
            guard let first = bytes.firstIndex(where: { $0 != 0x20 }), let last = bytes.lastIndex(where: { $0 != 0x20 }) else { return "" }
            return String(text[first...last])
        }
    }

    /// A block's Markdown: its line prefix ("## ", "  - ", "> "), or that it is code or a table cell.
    private struct MarkdownShape {
        var prefix = ""
        var isCode = false
        /// The table row a cell belongs to (a number unique to the row), and whether it is a header cell.
        var row: Int?
        var isHeader = false
        var isListItem = false
    }

    /// Where a node sits, for its blocks' Markdown: inside how many lists (and whether the innermost is
    /// ordered), quotes, and which table row.
    private struct Nesting {
        var lists = 0
        var ordered = false
        var quotes = 0
        var row: Int?
        /// Whether an enclosing element holds text as such (a paragraph, heading, list item, cell, quote, code).
        var inTextElement = false

        /// The shape of a block of element `tag` here.
        func shape(_ tag: Tag) -> MarkdownShape {
            var shape = MarkdownShape(prefix: String(repeating: "> ", count: quotes))
            switch tag {
            case HTMLTag.h1, HTMLTag.h2, HTMLTag.h3, HTMLTag.h4, HTMLTag.h5, HTMLTag.h6:
                shape.prefix += String(repeating: "#", count: tag - HTMLTag.h1 + 1) + " "
            case HTMLTag.li:
                shape.prefix += String(repeating: "  ", count: max(0, lists - 1)) + (ordered ? "1. " : "- ")
                shape.isListItem = true
            case HTMLTag.pre:
                shape.isCode = true
            case HTMLTag.td, HTMLTag.th:
                shape.row = row
                shape.isHeader = tag == HTMLTag.th
            default:
                // Text continuing inside a list item lines up under it.
                shape.prefix += String(repeating: "  ", count: lists)
            }
            return shape
        }
    }

    /// The blocks as Markdown: paragraphs apart, list items and table rows together, code fenced.
    private static func markdown(_ blocks: [Block]) -> String {
        var pieces: [(text: String, tight: Bool)] = []
        var index = 0
        while index < blocks.count {
            let block = blocks[index]
            if let row = block.shape.row {
                // A table: its rows one line each, a separator under the first.
                var rows: [[String]] = [], header = block.shape.isHeader
                var currentRow = row
                var cells: [String] = []
                while index < blocks.count, let cellRow = blocks[index].shape.row {
                    if cellRow != currentRow { rows.append(cells); cells = []; currentRow = cellRow }
                    cells.append(blocks[index].trimmedText.replacingOccurrences(of: "|", with: "\\|"))
                    index += 1
                }
                rows.append(cells)
                header = header || rows.count > 1
                let width = rows.map(\.count).max() ?? 1
                var lines = rows.map { "| " + ($0 + Array(repeating: "", count: width - $0.count)).joined(separator: " | ") + " |" }
                if header { lines.insert("|" + String(repeating: " --- |", count: width), at: 1) }
                pieces.append((lines.joined(separator: "\n"), false))
                continue
            }
            let text = block.shape.isCode ? "```\n" + block.text.trimmingCharacters(in: .newlines) + "\n```"
                : block.shape.prefix + block.trimmedText
            pieces.append((text, block.shape.isListItem))
            index += 1
        }
        var output = ""
        for (position, piece) in pieces.enumerated() {
            if position > 0 { output += piece.tight && pieces[position - 1].tight ? "\n" : "\n\n" }
            output += piece.text
        }
        return output
    }

    private static func id(_ tag: myhtml_tags) -> Tag { Tag(tag.rawValue) }

    private static let headingTags: Set<Tag> = Set([MyHTML_TAG_H1, MyHTML_TAG_H2, MyHTML_TAG_H3, MyHTML_TAG_H4, MyHTML_TAG_H5,
                                                       MyHTML_TAG_H6].map(Self.id))

    /// Elements that hold text as such; text outside them is loose in its container.
    private static let textTags: Set<Tag> = Set([
        MyHTML_TAG_P, MyHTML_TAG_H1, MyHTML_TAG_H2, MyHTML_TAG_H3, MyHTML_TAG_H4, MyHTML_TAG_H5, MyHTML_TAG_H6, MyHTML_TAG_LI,
        MyHTML_TAG_DT, MyHTML_TAG_DD, MyHTML_TAG_TD, MyHTML_TAG_TH, MyHTML_TAG_PRE, MyHTML_TAG_BLOCKQUOTE, MyHTML_TAG_CAPTION,
    ].map(Self.id))

    /// Lists and tables, judged whole by their share of link text.
    private static let listTags: Set<Tag> = Set([MyHTML_TAG_UL, MyHTML_TAG_OL, MyHTML_TAG_DL, MyHTML_TAG_TABLE].map(Self.id))

    private static let blockTags: Set<Tag> = Set([
        MyHTML_TAG_P, MyHTML_TAG_DIV, MyHTML_TAG_H1, MyHTML_TAG_H2, MyHTML_TAG_H3, MyHTML_TAG_H4, MyHTML_TAG_H5, MyHTML_TAG_H6,
        MyHTML_TAG_LI, MyHTML_TAG_UL, MyHTML_TAG_OL, MyHTML_TAG_DL, MyHTML_TAG_DT, MyHTML_TAG_DD, MyHTML_TAG_TABLE, MyHTML_TAG_TR,
        MyHTML_TAG_TD, MyHTML_TAG_TH, MyHTML_TAG_PRE, MyHTML_TAG_BLOCKQUOTE, MyHTML_TAG_SECTION, MyHTML_TAG_ARTICLE,
        MyHTML_TAG_MAIN, MyHTML_TAG_BR, MyHTML_TAG_HR, MyHTML_TAG_FIGURE, MyHTML_TAG_FIGCAPTION, MyHTML_TAG_HEADER,
        MyHTML_TAG_CAPTION, MyHTML_TAG_ADDRESS, MyHTML_TAG_CENTER,
    ].map(Self.id))

    /// Elements that are never main content.
    private static let droppedTags: Set<Tag> = Set([
        MyHTML_TAG_SCRIPT, MyHTML_TAG_STYLE, MyHTML_TAG_NOSCRIPT, MyHTML_TAG_TEMPLATE, MyHTML_TAG_HEAD, MyHTML_TAG_NAV,
        MyHTML_TAG_ASIDE, MyHTML_TAG_FOOTER, MyHTML_TAG_FORM, MyHTML_TAG_BUTTON, MyHTML_TAG_SELECT, MyHTML_TAG_OPTION,
        MyHTML_TAG_TEXTAREA, MyHTML_TAG_INPUT, MyHTML_TAG_IFRAME, MyHTML_TAG_SVG, MyHTML_TAG_CANVAS, MyHTML_TAG_OBJECT,
        MyHTML_TAG_EMBED, MyHTML_TAG_MENU, MyHTML_TAG_LABEL, MyHTML_TAG_FIGURE, MyHTML_TAG_FIGCAPTION,
    ].map(Self.id))

    /// Words in `id`, `class` or `role` that mark boilerplate.
    private static let boilerplate = ["nav", "menu", "footer", "sidebar", "cookie", "consent", "banner", "share",
                                      "social", "related", "breadcrumb", "advert", "sponsor", "promo", "newsletter",
                                      "subscribe", "popup", "modal", "masthead", "toolbar", "pagination", "skip-link",
                                      "widget", "rss", "login", "signup", "tags", "byline-share", "date", "time", "ad"]

    /// Parts of `id`, `class` or `role` that mark content, overriding the boilerplate words.
    private static let contentMarks = ["article", "content", "entry", "post-body", "story", "main"]

    /// Whether `bytes` contain `needle`.
    private static func contains(_ bytes: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { haystack in needle.withUnsafeBytes { containsBytes(haystack, $0) } }
    }

    // The word lists as bytes, made once: names are compared as ASCII bytes, since Foundation's substring search and
    // String building cost more than the parse on class-heavy pages.
    private static let contentMarkBytes = contentMarks.map { Array($0.utf8) }
    private static let boilerplateFragmentBytes = boilerplateFragments.map { Array($0.utf8) }
    /// The boilerplate words and their plurals, by length: a word of a name is compared only with those of its
    /// length, without making an array of it.
    private static let boilerplateWordsByLength: [[[UInt8]]] = {
        let words = boilerplate.flatMap { [Array($0.utf8), Array(($0 + "s").utf8)] }
        var byLength = [[[UInt8]]](repeating: [], count: (words.map(\.count).max() ?? 0) + 1)
        for word in words { byLength[word.count].append(word) }
        return byLength
    }()
    private static let commentBytes = Array("comment".utf8), displayNoneBytes = Array("display:none".utf8)

    /// Which elements are dropped, each judged once per page (the walks over the tree ask again and again).
    private final class Drops {
        /// Whether class, id and role names are judged (the first pass), or only tags and hiding (the fallback).
        let byName: Bool
        /// The bytes of text in the page's body (`visibleTextLength`).
        let pageText: Int
        /// What marks a node judged by this pass (`HTMLNode.mark`): a random number in the upper bits, so that a mark
        /// left by another pass or another page on a reused node is not taken for this pass's.
        let generation = UInt.random(in: 1...(UInt.max >> 1)) << 1
        init(byName: Bool, pageText: Int) { self.byName = byName; self.pageText = pageText }
    }

    /// Whether `node` (an element) is never main content; remembered on the node.
    private func isDropped(_ node: HTMLNode, _ drops: Drops) -> Bool {
        let mark = node.mark
        if mark & ~1 == drops.generation { return mark & 1 == 1 }
        let dropped = judgeDropped(node, byName: drops.byName, pageText: drops.pageText)
        node.mark = drops.generation | (dropped ? 1 : 0)
        return dropped
    }

    private func judgeDropped(_ node: HTMLNode, byName: Bool, pageText: Int) -> Bool {
        let tag = Self.tag(node)
        if Self.droppedTags.contains(tag) { return true }
        if tag == HTMLTag.body || tag == HTMLTag.html || tag == HTMLTag.main || tag == HTMLTag.article { return false }
        // Hidden from readers: the hidden attribute, aria-hidden, an inline display: none. (Attributes are read as
        // bytes: making strings of every element's attributes cost more than the rest of this judgement.)
        if node.attributeBytes("hidden") != nil || node.attributeBytes("aria-hidden").map({ $0.elementsEqual("true".utf8) }) == true {
            return true
        }
        if let style = node.attributeBytes("style") {
            let squeezed = style.filter { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }.map(Self.lowercased)
            if Self.contains(squeezed[...], Self.displayNoneBytes) { return true }
        }
        var marks: [UInt8] = []
        for value in [node.attributeBytes("id"), node.attributeBytes("class"), node.attributeBytes("role")] {
            guard let value else { continue }
            if !marks.isEmpty { marks.append(0x20) }
            marks += value.map(Self.lowercased)
        }
        guard !marks.isEmpty else { return false }
        if !includeComments, Self.contains(marks[...], Self.commentBytes) { return true }
        guard byName else { return false }
        // Judged name by name: one that names boilerplate ("entry-meta", "post-author") marks it even when it also
        // says content; a container with another name that says content ("l-sidebar-fixed
        // l-article-body-segment") is kept, as Mozilla's Readability keeps its "unlikely candidates" that say so.
        var boilerplate = false, content = false
        for name in marks.split(separator: 0x20) {
            if Self.namesBoilerplate(name) {
                boilerplate = true
            } else if Self.contentMarkBytes.contains(where: { Self.contains(name, $0) }) {
                content = true
            }
        }
        guard boilerplate && !content else { return false }
        // A wrapper of most of the page is not boilerplate, whatever its name says (a theme's "main-menu
        // off-canvas-wrap" around the whole page).
        return Double(Self.visibleTextLength(node)) < wrapperShare * Double(pageText)
    }

    /// Whether elements under `root` nest deeper than `limit` (walked with a stack of its own: this must not recurse).
    private static func nests(_ root: HTMLNode, deeperThan limit: Int) -> Bool {
        var stack = [(node: root, depth: 0)]
        while let (node, depth) = stack.popLast() {
            guard depth <= limit else { return true }
            for child in node.children where child.isElement { stack.append((child, depth + 1)) }
        }
        return false
    }

    /// The bytes of text under `node` outside scripts, styles and templates.
    private static func visibleTextLength(_ node: HTMLNode) -> Int {
        if node.isText { return node.textBytes.count }
        guard node.isElement else { return 0 }
        let tag = node.tag
        if tag == HTMLTag.script || tag == HTMLTag.style || tag == HTMLTag.noscript || tag == HTMLTag.template { return 0 }
        return node.children.reduce(0) { $0 + visibleTextLength($1) }
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte }

    /// Parts of a class or id name that mark boilerplate wherever they occur in it (as trafilatura's discard
    /// expressions match them): bylines and author boxes, meta lines, ratings, related and recommended lists,
    /// sharing, widgets, captions and credits. (Tried on trafilatura's evaluation pages and left out because they cost more text than
    /// boilerplate: "hidden" — utility classes such as overflow-hidden — and "teaser".)
    private static let boilerplateFragments = [
        "byline", "author", "meta", "rating", "timestamp", "user-info", "related", "recommend", "most-popular", "more-on",
        "-stories", "share", "sharing", "sociable", "tag-list", "jp-", "widget", "outbrain", "taboola", "paid-content",
        "noprint", "navbar", "subnav", "breadcrumb", "newsletter", "syndication", "akismet", "reply-", "caption",
        "credit", "copyright",
    ]

    /// Whether one class or id name names boilerplate: one of its words (separated by - or _, plural or not) is a
    /// boilerplate word ("main-nav", "site_footer", "cookie-banner"), or it holds a boilerplate fragment.
    private static func namesBoilerplate(_ name: ArraySlice<UInt8>) -> Bool {
        if boilerplateFragmentBytes.contains(where: { contains(name, $0) }) { return true }
        return name.split(whereSeparator: { $0 == 0x2d || $0 == 0x5f }).contains { word in
            word.count < boilerplateWordsByLength.count && boilerplateWordsByLength[word.count].contains { $0.elementsEqual(word) }
        }
    }



    /// The elements under `root` (`root` aside) named as an article's container (`ContentContainer`), the first of
    /// each tier, most telling first, with at least `containerMinimum` bytes of text.
    private func namedContainers(in root: HTMLNode, _ drops: Drops) -> [HTMLNode] {
        var firstOfTier = [HTMLNode?](repeating: nil, count: ContentContainer.tierCount)
        visitKept(root, drops) { node in
            if let tier = ContentContainer.tier(of: node), firstOfTier[tier] == nil { firstOfTier[tier] = node }
        }
        return firstOfTier.compactMap { $0 }.filter { $0.pointer != root.pointer && self.contentLength($0, drops) >= self.containerMinimum }
    }

    /// An `article`, `main` or `role="main"` holding at least 40% of the body's text, else the body itself.
    private func structuralRoot(in body: HTMLNode, _ drops: Drops) -> HTMLNode {
        let total = contentLength(body, drops)
        guard total > 0 else { return body }
        var best: (node: HTMLNode, length: Int)?
        Self.visit(body) { node in
            let tag = Self.tag(node)
            guard tag == HTMLTag.article || tag == HTMLTag.main || Self.attribute("role", of: node) == "main" else { return true }
            let length = contentLength(node, drops)
            if length > best?.length ?? 0 { best = (node, length) }
            return true
        }
        if let best, Double(best.length) >= 0.4 * Double(total) { return best.node }
        return body
    }

    /// Calls `body` on every element under `node` (itself included) in document order, dropped elements aside.
    private func visitKept(_ node: HTMLNode, _ drops: Drops, _ body: (HTMLNode) -> Void) {
        guard node.isElement, !isDropped(node, drops) else { return }
        body(node)
        for child in node.children { visitKept(child, drops, body) }
    }

    /// The characters of text under `node`, not counting dropped elements.
    private func contentLength(_ node: HTMLNode, _ drops: Drops) -> Int {
        if node.isText { return node.textBytes.count }
        guard node.isElement, !isDropped(node, drops) else { return 0 }
        return node.children.reduce(0) { $0 + contentLength($1, drops) }
    }

    /// A named container with less text than this (bytes, dropped elements aside) is passed over.
    public var containerMinimum = 250

    /// The non-space characters of text under `node` (dropped elements aside), and how many of them are in links.
    private func textShares(_ node: HTMLNode, _ drops: Drops, inLink: Bool = false) -> (Int, Int) {
        if node.isText {
            let count = Self.squeezed(node.textBytes).letters
            return (count, inLink ? count : 0)
        }
        guard node.isElement, !isDropped(node, drops) else { return (0, 0) }
        let link = inLink || node.tag == HTMLTag.a
        return node.children.reduce((0, 0)) { sum, child in
            let (characters, links) = textShares(child, drops, inLink: link)
            return (sum.0 + characters, sum.1 + links)
        }
    }

    /// Appends the blocks of `node` to `blocks`.
    private func collect(_ node: HTMLNode, into blocks: inout [Block], _ drops: Drops, inLink: Bool = false,
                         nesting: Nesting = Nesting()) {
        if node.isText {
            if blocks.isEmpty { blocks.append(Block(isLoose: !nesting.inTextElement)) }
            var (squeezed, letters) = Self.squeezed(node.textBytes)
            guard !squeezed.isEmpty else { return }
            // One space where two text nodes meet with a space on each side ("20, " and " was").
            if squeezed.utf8.first == 0x20, blocks[blocks.count - 1].text.utf8.last == 0x20 { squeezed.removeFirst() }
            blocks[blocks.count - 1].text += squeezed
            blocks[blocks.count - 1].characters += letters
            if inLink { blocks[blocks.count - 1].linkCharacters += letters }
        } else if node.isElement {
            guard !isDropped(node, drops) else { return }
            let tag = Self.tag(node)
            if Self.listTags.contains(tag) {
                let (characters, linkCharacters) = textShares(node, drops)
                if Double(linkCharacters) > maximumLinkDensity * Double(max(1, characters)) {
                    // A short heading right before a dropped list of links is its title ("Read also", "Related").
                    if let last = blocks.lastIndex(where: { !$0.trimmedText.isEmpty }),
                       blocks[last].isHeading, blocks[last].characters <= 60 {
                        blocks.removeSubrange(last...)
                    }
                    return
                }
            }
            var inner = nesting
            switch tag {
            case HTMLTag.ul, HTMLTag.ol:
                inner.lists += 1
                inner.ordered = tag == HTMLTag.ol
            case HTMLTag.blockquote: inner.quotes += 1
            case HTMLTag.tr: inner.row = blocks.count
            default: break
            }
            let isTextElement = Self.textTags.contains(tag)
            inner.inTextElement = nesting.inTextElement || isTextElement
            let isBlock = Self.blockTags.contains(tag)
            if isBlock {
                blocks.append(Block(headingLevel: Self.headingTags.contains(tag) ? Int(tag - HTMLTag.h1) + 1 : 0,
                                    isLoose: !inner.inTextElement, isParagraph: tag == HTMLTag.p, shape: nesting.shape(tag)))
            }
            let link = inLink || tag == HTMLTag.a
            if tag == HTMLTag.a {
                if blocks.isEmpty { blocks.append(Block(isLoose: !nesting.inTextElement)) }
                blocks[blocks.count - 1].links += 1
            }
            if tag == HTMLTag.pre {
                // Code keeps its lines and spaces.
                let code = Self.plainText(node)
                blocks[blocks.count - 1].text += code
                blocks[blocks.count - 1].characters += code.count
            } else {
                for child in node.children { collect(child, into: &blocks, drops, inLink: link, nesting: inner) }
            }
            if isBlock { blocks.append(Block(isLoose: !nesting.inTextElement, shape: nesting.shape(HTMLTag.span))) }
        }
    }

    // MARK: - Tree helpers

    private static func tag(_ node: HTMLNode) -> Tag { node.isElement ? node.tag : HTMLTag.unknown }

    private static func attribute(_ name: String, of node: HTMLNode) -> String? {
        node.isElement ? node.attribute(name) : nil
    }

    /// Calls `body` on every element under `node` in document order, descending while it returns true.
    private static func visit(_ node: HTMLNode, _ body: (HTMLNode) -> Bool) {
        if node.isElement {
            guard body(node) else { return }
        } else if node.tag != HTMLTag.document {
            return
        }
        for child in node.children { visit(child, body) }
    }

    /// The first element under `node` (itself included) for which `matches` holds.
    private static func find(_ node: HTMLNode, _ matches: (HTMLNode) -> Bool) -> HTMLNode? {
        var found: HTMLNode?
        visit(node) { element in
            if found == nil, matches(element) { found = element }
            return found == nil
        }
        return found
    }

    /// All the text under `node`, as it is.
    private static func plainText(_ node: HTMLNode) -> String {
        if node.isText { return String(decoding: node.textBytes, as: UTF8.self) }
        guard node.isElement || node.tag == HTMLTag.document else { return "" }
        return node.children.map(plainText).joined()
    }

    /// `text` (UTF-8) with every run of whitespace made one space — HTML's (space, tab, line feed, form feed,
    /// carriage return) and Unicode's spaces (no-break, en to hair, narrow no-break, ideographic), which pages use
    /// for layout — and its count of other bytes (a measure of its length, on bytes for speed).
    private static func squeezed(_ text: UnsafeRawBufferPointer) -> (text: String, letters: Int) {
        var bytes = [UInt8](), letters = 0, lastWasSpace = false
        bytes.reserveCapacity(text.count)
        var index = 0
        while index < text.count {
            let byte = text[index]
            let spaceLength = whitespaceLength(text, at: index)
            if spaceLength > 0 {
                if !lastWasSpace { bytes.append(0x20) }
                lastWasSpace = true
                index += spaceLength
                continue
            }
            bytes.append(byte)
            letters += 1
            lastWasSpace = false
            index += 1
        }
        return (String(decoding: bytes, as: UTF8.self), letters)
    }

    /// The length in bytes of the whitespace character at `index` of `text` (UTF-8), or 0 when it is not one.
    private static func whitespaceLength(_ text: UnsafeRawBufferPointer, at index: Int) -> Int {
        let byte = text[index]
        switch byte {
        case 0x20, 0x09, 0x0a, 0x0c, 0x0d:
            return 1
        case 0xc2:  // U+00A0
            return index + 1 < text.count && text[index + 1] == 0xa0 ? 2 : 0
        case 0xe2:  // U+2000–U+200A, U+202F, U+205F
            guard index + 2 < text.count else { return 0 }
            let (second, third) = (text[index + 1], text[index + 2])
            return second == 0x80 && (0x80...0x8a).contains(third) || second == 0x80 && third == 0xaf
                || second == 0x81 && third == 0x9f ? 3 : 0
        case 0xe3:  // U+3000
            return index + 2 < text.count && text[index + 1] == 0x80 && text[index + 2] == 0x80 ? 3 : 0
        default:
            return 0
        }
    }
}

/// The MyHTML tag ids the extractor names.
private typealias Tag = myhtml_tag_id_t

private enum HTMLTag {
    static let unknown = Tag(MyHTML_TAG__UNDEF.rawValue), document = Tag(MyHTML_TAG__UNDEF.rawValue)
    static let a = Tag(MyHTML_TAG_A.rawValue), article = Tag(MyHTML_TAG_ARTICLE.rawValue)
    static let blockquote = Tag(MyHTML_TAG_BLOCKQUOTE.rawValue), body = Tag(MyHTML_TAG_BODY.rawValue), br = Tag(MyHTML_TAG_BR.rawValue)
    static let p = Tag(MyHTML_TAG_P.rawValue)
    static let h1 = Tag(MyHTML_TAG_H1.rawValue), h2 = Tag(MyHTML_TAG_H2.rawValue), h3 = Tag(MyHTML_TAG_H3.rawValue)
    static let h4 = Tag(MyHTML_TAG_H4.rawValue), h5 = Tag(MyHTML_TAG_H5.rawValue), h6 = Tag(MyHTML_TAG_H6.rawValue)
    static let html = Tag(MyHTML_TAG_HTML.rawValue), li = Tag(MyHTML_TAG_LI.rawValue), main = Tag(MyHTML_TAG_MAIN.rawValue)
    static let meta = Tag(MyHTML_TAG_META.rawValue), noscript = Tag(MyHTML_TAG_NOSCRIPT.rawValue), ol = Tag(MyHTML_TAG_OL.rawValue)
    static let pre = Tag(MyHTML_TAG_PRE.rawValue), script = Tag(MyHTML_TAG_SCRIPT.rawValue), span = Tag(MyHTML_TAG_SPAN.rawValue)
    static let td = Tag(MyHTML_TAG_TD.rawValue), th = Tag(MyHTML_TAG_TH.rawValue), time = Tag(MyHTML_TAG_TIME.rawValue)
    static let style = Tag(MyHTML_TAG_STYLE.rawValue), template = Tag(MyHTML_TAG_TEMPLATE.rawValue)
    static let title = Tag(MyHTML_TAG_TITLE.rawValue), tr = Tag(MyHTML_TAG_TR.rawValue), ul = Tag(MyHTML_TAG_UL.rawValue)
}
