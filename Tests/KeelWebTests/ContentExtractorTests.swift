import Foundation
import KeelWeb
import XCTest

/// The main content of a page is kept, in order, and what surrounds it is not.
final class ContentExtractorTests: XCTestCase {
    private let page = """
        <!doctype html><html><head><title> The Article Title </title><style>p { color: red }</style>
        <script>var tracking = "script text";</script></head>
        <body>
        <header class="site-header"><a href="/">Site name</a></header>
        <nav><ul><li><a href="/a">Home</a></li><li><a href="/b">Archive</a></li></ul></nav>
        <div class="cookie-consent">We use cookies. Accept all?</div>
        <article>
          <h1>A heading worth keeping</h1>
          <p>The first paragraph has <a href="/x">a link</a> inside its text, which stays.</p>
          <ul><li>First point of a list</li><li>Second point of a list</li></ul>
          <table><tr><td>Cell one</td><td>Cell two</td></tr></table>
          <pre>let x = 1
        let y = 2</pre>
          <blockquote>A quoted sentence from someone.</blockquote>
          <div class="share-buttons"><a href="/t">Tweet this</a> <a href="/f">Share on Facebook</a></div>
          <div><a href="/1">Tag one</a> <a href="/2">Tag two</a> <a href="/3">Tag three</a></div>
          <p><a href="https://example.org/source">https://example.org/source</a></p>
          <h2>Read also</h2>
          <ul><li><a href="/r1">Related story one</a></li><li><a href="/r2">Related story two</a></li></ul>
          <p><a href="/list">Back to the list</a></p>
          <section id="comments"><p>A reader's comment on the article.</p></section>
        </article>
        <aside><p>Sidebar text that is not content.</p></aside>
        <footer><p>Copyright and imprint.</p></footer>
        </body></html>
        """

    func testTheArticleIsKeptAndItsSurroundingsAreNot() {
        let result = ContentExtractor().extract(html: page)
        XCTAssertEqual(result.title, "The Article Title")
        let expected = ["A heading worth keeping", "The first paragraph has a link inside its text, which stays.",
                        "First point of a list", "Second point of a list", "Cell one", "Cell two",
                        "let x = 1\nlet y = 2", "A quoted sentence from someone.", "https://example.org/source"]
        var position = result.text.startIndex
        for piece in expected {
            guard let found = result.text.range(of: piece, range: position..<result.text.endIndex) else {
                return XCTFail("missing or out of order: \(piece)\n---\n\(result.text)")
            }
            position = found.upperBound
        }
        for unwanted in ["Site name", "Home", "Archive", "cookies", "Sidebar", "Copyright", "Tweet", "Tag one",
                         "Related story", "Read also", "Back to the list", "comment on the article", "script text", "color: red"] {
            XCTAssertFalse(result.text.contains(unwanted), "\(unwanted) was kept:\n\(result.text)")
        }
    }

    /// On a thread of the pool's 1 MB stack: a page nested as deep as the limit gives its text; one nested twenty
    /// thousand deep gives none, and does not overflow the stack.
    func testDeeplyNestedPagesDoNotOverflowTheStack() {
        final class Result: @unchecked Sendable { var text = "" }
        func extract(_ html: String) -> String {
            let result = Result(), done = DispatchSemaphore(value: 0)
            let thread = Thread {
                result.text = ContentExtractor().extract(html: html).text
                done.signal()
            }
            thread.stackSize = 1 << 20
            thread.start()
            done.wait()
            return result.text
        }
        let sentence = "<p>A paragraph of text at the bottom of the nesting, long enough to be content.</p>"
        let deep = String(repeating: "<div>", count: ContentExtractor.maximumDepth - 4) + sentence
        XCTAssertTrue(extract("<html><body>" + deep + "</body></html>").contains("at the bottom of the nesting"))
        XCTAssertEqual(extract("<html><body>" + String(repeating: "<div>", count: 20_000) + sentence + "</body></html>"), "")
    }

    /// The nesting estimate that refuses a page before parsing follows how a parser opens and closes elements, so
    /// that sloppy but shallow pages pass: 5,000 unclosed `<p>`s, spans closed by their parent's end tag, tags in
    /// comments and scripts, a '>' inside a quoted attribute; and deep ones do not. A page 200,000 deep (1.2 MB) gives
    /// no text without being parsed (parsing took minutes).
    func testTheNestingEstimateFollowsTheParser() {
        let limit = 1024
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: String(repeating: "<p>text ", count: 5000)))
        XCTAssertTrue(MarkupNesting.exceeds(limit, in: String(repeating: "<div>", count: limit + 1)))
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: String(repeating: "<div>", count: limit)))
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: String(repeating: "<DIV class=\"a>b\"><span><b>x</Div>", count: 5000)))
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: "<!-- " + String(repeating: "<div>", count: 5000) + " -->"))
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: "<script>if (a<b) {" + String(repeating: "'<div>'", count: 5000) + "}</SCRIPT >"))
        XCTAssertTrue(MarkupNesting.exceeds(limit, in: "<script></script>" + String(repeating: "<section><span>", count: 600)))
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: String(repeating: "<svg><path d=\"M0\"/></svg>", count: 5000)))
        XCTAssertFalse(MarkupNesting.exceeds(limit, in: String(repeating: "</div>", count: 5000) + "<div><"))
        // Legacy pages whose ends are implied: cells of <font> closed by their cell's end, paragraphs and items of
        // inline markup, unclosed anchors (each closes the last), a form per cell, an apostrophe in a bare attribute.
        for page in ["<table>" + String(repeating: "<tr><td><font face=Arial>cell</td></tr>", count: 5000),
                     String(repeating: "<p><font size=2>para", count: 5000), "<ul>" + String(repeating: "<li><b>item</li>", count: 5000),
                     String(repeating: "<a name=\"q\">question ", count: 5000),
                     "<table>" + String(repeating: "<tr><td><form action=x><input>", count: 5000),
                     "<div title=it's>" + String(repeating: "<div></div>", count: 5000),
                     // Found by a port of this estimate run on real and legacy pages against html5lib's depth: tables
                     // whose </table> is missing, selects without </select>, a heading ended by another's end tag,
                     // unclosed buttons and <nobr>s, elements HTML holds empty.
                     String(repeating: "<table><tr><td>cell</td></tr>", count: 5000),
                     String(repeating: "<form action=x><select name=s><option value=1>One<option value=2>Two", count: 5000),
                     String(repeating: "<h3>Section title</h4><p>Body text", count: 5000), String(repeating: "<button>x", count: 5000),
                     String(repeating: "<nobr>x", count: 5000), String(repeating: "<basefont size=3><image src=x><frame>", count: 5000)] {
            XCTAssertFalse(MarkupNesting.exceeds(limit, in: page), String(page.prefix(60)))
        }
        XCTAssertTrue(MarkupNesting.exceeds(limit, in: String(repeating: "<ul><li>", count: limit)), "nested lists nest")
        XCTAssertTrue(MarkupNesting.exceeds(limit, in: "<p>" + String(repeating: "<span>", count: limit + 1)), "spans in a paragraph nest")
        XCTAssertTrue(MarkupNesting.exceeds(limit, in: String(repeating: "<div/>", count: limit + 1)), "HTML ignores the / of <div/>")
        XCTAssertTrue(MarkupNesting.exceeds(limit, in: String(repeating: "<table><tr><td>", count: limit)), "tables in cells nest")
        let sentence = "<p>A paragraph of text at the bottom of the nesting, long enough to be content.</p>"
        XCTAssertEqual(ContentExtractor().extract(html: String(repeating: "<div>", count: 200_000) + sentence).text, "")
    }

    func testCommentsAreKeptWhenAskedFor() {
        var extractor = ContentExtractor()
        extractor.includeComments = true
        XCTAssertTrue(extractor.extract(html: page).text.contains("A reader's comment on the article."))
    }

    func testAPageWithoutAnArticleKeepsItsBodyText() {
        let html = "<html><body><div id=\"main-nav\"><a href=\"/\">Menu</a></div><nav>Skip to</nav><p>one<p>two<div>three"
            + "<div style=\"display: none\">invisible</div><footer>Imprint</footer></body>"
        let result = ContentExtractor().extract(html: html)
        XCTAssertEqual(result.text, "one\ntwo\nthree", "unclosed tags are closed as a browser closes them")
        XCTAssertNil(result.title)
    }

    /// A layout container named after a sidebar that also says it holds the article is kept (as Readability does);
    /// a plain sidebar is not.
    func testAContainerThatCallsItselfContentIsKept() {
        let html = "<body><div class=\"l-sidebar-fixed l-article-body-segment\"><p>The story itself.</p></div>"
            + "<div class=\"Sidebar\"><p>Side notes.</p></div></body>"
        XCTAssertEqual(ContentExtractor().extract(html: html).text, "The story itself.")
    }

    func testAnArticleHoldingLittleOfThePageIsNotTakenForItsContent() {
        let body = String(repeating: "<p>Plenty of body text outside any article element.</p>", count: 5)
        let result = ContentExtractor().extract(html: "<body>\(body)<article><p>A teaser.</p></article></body>")
        XCTAssertTrue(result.text.hasPrefix("Plenty of body text"), result.text)
        XCTAssertTrue(result.text.hasSuffix("A teaser."), result.text)
    }

    func testANameSayingBoilerplateWinsOverOneSayingContentInTheSameName() {
        // A post long enough that the extraction without names (for pages under 500 characters) does not start.
        let body = String(repeating: "The body of the post, which is what a reader came for. ", count: 10).trimmingCharacters(in: .whitespaces)
        let page = ContentExtractor().extract(html: """
            <html><body><div class="entry-content"><p>\(body)</p>
            <div class="entry-meta">Posted by Anna on 3 May</div><div class="sharedaddy sd-sharing-enabled">Share this: Twitter</div>
            <div class="post-author-bio">Anna writes about gardens.</div></div></body></html>
            """)
        XCTAssertEqual(page.text, body)
    }

    /// Text of some length, different for each `seed`, so that a test can find where each piece went.
    private func prose(_ seed: String, sentences: Int) -> String {
        (1...sentences).map { "\(seed) sentence \($0) says something a reader would want to keep." }.joined(separator: " ")
    }

    /// The element a content management system names as the article's body is where the text is taken from: what
    /// sits around it without a telling name (a site banner, a byline, teasers of other articles) is left out.
    func testTheElementNamedAsTheArticleBodyIsTheContentRoot() {
        let story = prose("Story", sentences: 8), teaser = prose("Teaser", sentences: 3)
        let page = ContentExtractor().extract(html: """
            <html><body><div class="top"><p>The Daily Example, since 1901</p></div><div class="wrap">
            <div class="by"><p>By Anna Smith, 3 May 2024</p></div>
            <div class="entry-content clearfix"><p>\(story)</p><p>\(story)</p></div>
            <div class="more"><h3>Elsewhere</h3><p>\(teaser)</p></div></div></body></html>
            """)
        XCTAssertEqual(page.text, story + "\n" + story)
    }

    /// A named container holding far less than the page's text (the body proper lies outside it) is passed over.
    func testANamedContainerHoldingLittleOfTheTextIsPassedOver() {
        let lead = prose("Lead", sentences: 5), story = prose("Story", sentences: 25)
        let page = ContentExtractor().extract(html: """
            <html><body><div class="post-content"><p>\(lead)</p></div><div class="copy"><p>\(story)</p></div></body></html>
            """)
        XCTAssertEqual(page.text, lead + "\n" + story)
    }

    /// A heading left titling nothing (its list of links dropped, or its section empty) goes with what it titled.
    func testAHeadingThatTitlesNothingIsDropped() {
        let first = prose("First", sentences: 6), second = prose("Second", sentences: 6)
        let page = ContentExtractor().extract(html: """
            <html><body><article><h1>Title</h1><p>\(first)</p><h2>Gallery</h2><h2>Part two</h2><p>\(second)</p>
            <h2>More from the site</h2><div class="teaser-list"><p><a href="/a">Another story</a></p></div>
            </article></body></html>
            """)
        XCTAssertEqual(page.text, ["Title", first, "Part two", second].joined(separator: "\n"))
    }

    /// Short text loose in a container (a photo credit, an "Advertisement" label) is dropped where paragraphs make
    /// the page, and kept where the page has few paragraphs (text written in divs).
    func testShortLooseTextIsDroppedWhereParagraphsMakeThePage() {
        let story = prose("Story", sentences: 12)
        let withParagraphs = ContentExtractor().extract(html: """
            <html><body><article><p>\(story)</p><div class="img">Photo: Anna Smith</div><div>Advertisement</div>
            <p>\(story)</p></article></body></html>
            """)
        XCTAssertEqual(withParagraphs.text, story + "\n" + story)
        let inDivs = ContentExtractor().extract(html: """
            <html><body><article><div>Opening hours: 9 to 5.</div><div>\(prose("Note", sentences: 8))</div></article></body></html>
            """)
        XCTAssertTrue(inDivs.text.hasPrefix("Opening hours: 9 to 5.\n"), inDivs.text)
    }

    /// A short heading whose next text is dropped as links titles those links.
    func testAHeadingOverDroppedLinksGoesWithThem() {
        let story = prose("Story", sentences: 12)
        let page = ContentExtractor().extract(html: """
            <html><body><article><h1>Title</h1><p>\(story)</p><h3>You might also like</h3>
            <div class="card"><a href="/1">The first teaser's long headline, all of it a link</a></div>
            <p>\(story)</p></article></body></html>
            """)
        XCTAssertEqual(page.text, ["Title", story, story].joined(separator: "\n"))
    }

    /// Runs of whitespace become one space, across text nodes and for Unicode's spaces too (no-break, narrow
    /// no-break, ideographic), as trafilatura's output has them.
    func testWhitespaceIsOneSpaceAcrossNodesAndForUnicodeSpaces() {
        let page = ContentExtractor().extract(html: "<p>Mekhi, 20, <b> was</b> ill;\u{00A0}\u{00A0}those\u{202F}who\u{3000}rest.</p>")
        XCTAssertEqual(page.text, "Mekhi, 20, was ill; those who rest.")
    }

    /// A named container that keeps one block (a teaser named "post") is passed over for the next one named.
    func testANamedContainerOfOneBlockIsPassedOver() {
        let teaser = prose("Teaser", sentences: 9), story = prose("Story", sentences: 4)
        let page = ContentExtractor().extract(html: """
            <html><body><div class="post"><p>\(teaser)</p></div>
            <div class="story-body"><p>\(story)</p><p>\(story)</p><p>\(story)</p></div></body></html>
            """)
        XCTAssertEqual(page.text, [story, story, story].joined(separator: "\n"))
    }

    /// Captions, photo credits, copyright lines and advertising labels, named as such, are not content.
    func testCaptionsCreditsCopyrightAndAdvertisingAreDropped() {
        let story = prose("Story", sentences: 4)
        let page = ContentExtractor().extract(html: """
            <html><body><article><p>\(story)</p><div class="wp-caption-text">A river at dawn.</div>
            <p class="credit">Photo: Anna Smith</p><div class="tl-ad-container"><h3>Advertisement</h3></div>
            <p>\(story)</p><p class="copyright-note">© 2020 Example Inc. All rights reserved.</p></article></body></html>
            """)
        XCTAssertEqual(page.text, story + "\n" + story)
    }

    /// A theme that names the wrapper of the whole page as a menu ("main-menu off-canvas-wrap") does not hide the
    /// page: the wrapper is kept, and the boilerplate inside it is still judged by its own names.
    func testAWrapperNamedAsBoilerplateAroundThePageIsKept() {
        let story = prose("Story", sentences: 8)
        let page = ContentExtractor().extract(html: """
            <html><body><div class="main-menu off-canvas-wrap"><div class="page"><p>\(story)</p>
            <div class="box-related"><span>See also</span><p>Another story</p></div></div></div></body></html>
            """)
        XCTAssertEqual(page.text, story)
    }

    func testAPageWhoseNamesHideItsTextIsExtractedAgainWithoutThem() {
        // Site builders wrap everything in names that usually mean boilerplate (Elementor's "elementor-widget").
        let paragraph = String(repeating: "The association was founded by a small group of teachers who wanted every child to read. ", count: 8)
        let page = ContentExtractor().extract(html: """
            <html><body><nav>Home About</nav><div class="elementor-widget elementor-widget-text-editor">
            <div class="elementor-widget-container"><p>\(paragraph)</p></div></div></body></html>
            """)
        XCTAssertEqual(page.text, paragraph.trimmingCharacters(in: .whitespaces))
    }

    /// The extraction without names judges every element afresh: what the first pass dropped by name is kept.
    func testTheSecondPassDoesNotReuseTheFirstPassJudgements() {
        let first = prose("First", sentences: 3), second = prose("Second", sentences: 3)
        let page = ContentExtractor().extract(html: """
            <html><body><div class="widget"><p>\(first)</p></div><div class="widget"><p>\(second)</p></div>
            <div class="widget"><p>\(first)</p></div></body></html>
            """)
        XCTAssertEqual(page.text, [first, second, first].joined(separator: "\n"))
    }

    func testDeclaredLanguageAndPublicationDate() {
        let extractor = ContentExtractor()
        let dated = extractor.extract(html: """
            <html lang="de-AT"><head><meta property="article:published_time" content="2024-03-07T10:00:00+01:00">
            <meta name="date" content="2023-01-01"></head><body><p>Text.</p><time datetime="2022-05-05">5 May</time></body></html>
            """)
        XCTAssertEqual(dated.language, "de")
        // The most specific statement wins: article:published_time over a bare "date" and a <time>.
        XCTAssertEqual(dated.date, "2024-03-07")
        let fromJSONLD = extractor.extract(html: """
            <html><head><meta http-equiv="Content-Language" content="fr"><script type="application/ld+json">
            {"@type":"NewsArticle","datePublished": "2021-11-30T08:00:00Z"}</script>
            <meta name="date" content="2023-01-01"></head><body><p>Texte.</p></body></html>
            """)
        XCTAssertEqual(fromJSONLD.language, "fr")
        XCTAssertEqual(fromJSONLD.date, "2021-11-30")
        let nothing = extractor.extract(html: "<html lang=\"x-klingon-long\"><body><time datetime=\"tomorrow\">soon</time></body></html>")
        XCTAssertNil(nothing.language)
        XCTAssertNil(nothing.date)
    }
}

/// `markdown = true`: the same content, written as Markdown.
final class MarkdownOutputTests: XCTestCase {
    func testHeadingsListsQuotesCodeAndTables() {
        var extractor = ContentExtractor()
        extractor.markdown = true
        let page = extractor.extract(html: """
            <html><body><nav><a href="/">Home</a></nav><article>
            <h1>Title</h1><p>First paragraph.</p><h3>Part</h3>
            <ul><li>one</li><li>two<ol><li>inner</li></ol></li></ul>
            <blockquote><p>Quoted words.</p></blockquote>
            <pre>let x = 1
            print(x)</pre>
            <table><tr><th>name</th><th>size</th></tr><tr><td>a|b</td><td>3</td></tr></table>
            </article></body></html>
            """)
        XCTAssertEqual(page.text, """
            # Title

            First paragraph.

            ### Part

            - one
            - two
              1. inner

            > Quoted words.

            ```
            let x = 1
            print(x)
            ```

            | name | size |
            | --- | --- |
            | a\\|b | 3 |
            """)
    }
}
