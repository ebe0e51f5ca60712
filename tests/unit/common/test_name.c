/* Tests common/name.c: which names are tracking domains and how they are normalized. */
#include "check.h"
#include "common.h"

static int norm(const char *in, const char *want)
{
	char out[TT_NAME_MAX];
	struct tt_err err;
	if (tt_name_normalize(in, out, &err) != 0)
		return want == NULL;
	return want && strcmp(out, want) == 0;
}

int main(void)
{
	CHECK(norm("Click.Shop.Example", "click.shop.example"), "lowercased");
	CHECK(norm("click.shop.example.", "click.shop.example"), "trailing dot stripped");
	CHECK(norm("xn--bcher-kva.example", "xn--bcher-kva.example"), "A-labels accepted");
	CHECK(norm("a-b.c-d.example", "a-b.c-d.example"), "inner hyphens accepted");
	CHECK(norm("*.shop.example", NULL), "wildcard refused");
	CHECK(norm("192.0.2.1", NULL), "IPv4 literal refused");
	CHECK(norm("[::1]", NULL), "IPv6 literal refused");
	CHECK(norm("localhost", NULL), "single label refused");
	CHECK(norm("", NULL), "empty refused");
	CHECK(norm(".", NULL), "root refused");
	CHECK(norm("a..example", NULL), "empty label refused");
	CHECK(norm("-a.example", NULL), "leading hyphen refused");
	CHECK(norm("a-.example", NULL), "trailing hyphen refused");
	CHECK(norm("bücher.example", NULL), "U-labels refused (convert to A-labels first)");
	CHECK(norm("a b.example", NULL), "space refused");
	char label[80];
	memset(label, 'a', 64);
	strcpy(label + 64, ".example");
	CHECK(norm(label, NULL), "64-character label refused");
	memset(label, 'a', 63);
	strcpy(label + 63, ".example");
	CHECK(norm(label, label), "63-character label accepted");
	CHECK(tt_name_hash("a.example", 9) != tt_name_hash("b.example", 9), "hash separates names");
	CHECK_DONE();
}
