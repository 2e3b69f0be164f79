@testable import KeelWeb
import XCTest

/// Pages whose text is only in JavaScript state or `noscript`, written for these tests in the shapes the frameworks
/// produce: the text comes out, the keys, slugs, ids and paths around it do not, and nothing is said twice.
final class EmbeddedStateTests: XCTestCase {
    private func text(_ html: String) -> String { ContentExtractor().extract(html: html).text }

    func testNextDataGivesItsProseAndNotItsKeys() {
        let page = """
            <html><head><title>News</title></head><body><div id="__next"></div>
            <script id="__NEXT_DATA__" type="application/json">{"props":{"pageProps":{"article":{"title":"Floods",
            "body":"<p>The river flooded the old town twice this spring, and the people there are tired of waiting.</p><p>Engineers say the new walls will take three more years to finish.</p>",
            "slug":"river-floods-old-town","id":12345,"image":"https://example.com/a/very/long/path/to/the/picture.jpg"}}},
            "page":"/news/[slug]","buildId":"a1b2c3"}</script></body></html>
            """
        XCTAssertEqual(text(page), "The river flooded the old town twice this spring, and the people there are tired of waiting. "
            + "Engineers say the new walls will take three more years to finish.")
    }

    func testNuxtsJavaScriptGivesItsStringLiterals() {
        let page = """
            <html><body><div id="__nuxt"></div><script>window.__NUXT__=(function(a,b){return {layout:"default",
            data:[{post:{title:a,content:"Our team climbed the northern ridge at dawn and reached the summit before the clouds came.",
            tags:['alps','climbing']}}],state:{}}}("Summit day",null));</script></body></html>
            """
        XCTAssertEqual(text(page), "Our team climbed the northern ridge at dawn and reached the summit before the clouds came.")
    }

    func testInitialStateAndApolloStateAssignments() {
        let page = """
            <html><body><div id="app"></div>
            <script>window.__INITIAL_STATE__ = {"story":{"headline":"Reopened","text":"A quiet library in the centre of the city has reopened after two years of repairs to its roof.","views":1200}};</script>
            <script>window.__APOLLO_STATE__={"Post:1":{"__typename":"Post","summary":"Volunteers planted four hundred trees along the canal on a cold Saturday morning."}}</script>
            </body></html>
            """
        XCTAssertEqual(text(page), "A quiet library in the centre of the city has reopened after two years of repairs to its roof.\n"
            + "Volunteers planted four hundred trees along the canal on a cold Saturday morning.")
    }

    func testJSONLDArticleBodyAndNoscript() {
        let page = """
            <html><head><script type="application/ld+json">{"@context":"https://schema.org","@type":"NewsArticle",
            "name":"Coastal erosion report is out now for everyone",
            "articleBody":"The coast lost eleven metres of cliff in the storms of the last winter, the survey found."}</script></head>
            <body><noscript><p>Readers without JavaScript can download the full report on coastal erosion as a PDF file.</p></noscript>
            <div id="root"></div></body></html>
            """
        XCTAssertEqual(text(page), "The coast lost eleven metres of cliff in the storms of the last winter, the survey found.\n"
            + "Readers without JavaScript can download the full report on coastal erosion as a PDF file.")
    }

    func testStateRepeatingTheVisibleTextIsNotAddedAgain() {
        let sentence = "The coast lost eleven metres of cliff in the storms of the last winter, the survey found."
        let page = """
            <html><head><script type="application/ld+json">{"articleBody":"\(sentence)"}</script></head>
            <body><article><p>\(sentence)</p></article></body></html>
            """
        XCTAssertEqual(text(page), sentence)
    }

    func testAPageWithEnoughVisibleTextIgnoresItsState() {
        let paragraph = String(repeating: "The harbour is busy in the summer months with boats from many countries. ", count: 5)
        let page = """
            <html><body><article><p>\(paragraph)</p></article>
            <script>window.__INITIAL_STATE__ = {"text":"A different sentence that only the state holds and nobody sees here."};</script></body></html>
            """
        XCTAssertEqual(text(page), paragraph.trimmingCharacters(in: .whitespaces))
    }

    func testMarkersAreFoundAnywhereInAScript() {
        XCTAssertTrue(EmbeddedState.contains("x=1;window.__NUXT__", "__NUXT__"))
        XCTAssertTrue(EmbeddedState.contains("__NUXT__=1", "__NUXT__"))
        XCTAssertFalse(EmbeddedState.contains("window.__NUXT_", "__NUXT__"))
        XCTAssertFalse(EmbeddedState.contains("_ _NUXT__ and __NUX__", "__NUXT__"))
        XCTAssertFalse(EmbeddedState.contains("", "__NUXT__"))
    }
}
