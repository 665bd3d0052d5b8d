"""The shipped catalog data (deploy/data/catalog/agencies.json and procedures.json)
against the rules of docs/catalog.md: the files parse; agency codes are unique and
well-formed and the parents form one tree rooted at the province, at least three
levels deep; every procedure and every step names an existing agency; the steps'
shares add up to the procedure's working days; levels, fees, documents and return
methods are valid; the demo province has enough procedures of each level and both
liên thông chains of Nghị định 63/2024 with steps at the police and at social
insurance; all text is Vietnamese with diacritics, NFC-normalised; docs/catalog.md
lists every agency and every procedure.

Needs no build, no database and nothing outside the standard library:
    cd tests/system && /usr/bin/python3 -m unittest test_catalog_data -v"""
import json
import os
import re
import unicodedata
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "deploy", "data", "catalog")
AGENCIES = os.path.join(DATA, "agencies.json")
PROCEDURES = os.path.join(DATA, "procedures.json")
DOC = os.path.join(ROOT, "docs", "catalog.md")

AGENCY_CODE = re.compile(r"^[A-Za-z0-9.-]{1,32}$")
# the catalog code, as intake accepts it (docs/integrator-guide.md) ...
PROCEDURE_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# ... and the shape of a code of the national procedures database (1.001193)
NATIONAL_CODE = re.compile(r"^[0-9]\.[0-9]{6}$")
DOC_KIND = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
CUTOFF = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$")

KINDS = {"province", "one_stop_centre", "department", "unit", "commune",
         "police", "social_insurance", "tax", "peer_province"}
EXTERNAL_KINDS = {"police", "social_insurance", "tax", "peer_province"}
RETURN_METHODS = {"counter", "post", "online"}
AGENCY_FIELDS = {"code", "name", "kind", "parent", "external"}
PROCEDURE_FIELDS = {"code", "name", "field", "agency", "level", "days", "cutoff", "fee",
                    "documents", "return_methods", "steps"}

VIETNAMESE_LETTERS = "ăâđêôơư"
# grave, acute, tilde, hook above, dot below: the five tone marks
TONE_MARKS = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # UnicodeDecodeError fails the test loudly
    return text, json.loads(text)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class CatalogData(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.agencies_text, cls.agencies_doc = load(AGENCIES)
        cls.procedures_text, cls.procedures_doc = load(PROCEDURES)
        cls.agencies = cls.agencies_doc.get("agencies", [])
        cls.procedures = cls.procedures_doc.get("procedures", [])
        cls.by_code = {a.get("code"): a for a in cls.agencies if isinstance(a, dict)}

    # ---- the files -------------------------------------------------------------

    def test_files_have_version_and_list(self):
        for name, doc, key in (("agencies.json", self.agencies_doc, "agencies"),
                               ("procedures.json", self.procedures_doc, "procedures")):
            with self.subTest(file=name):
                self.assertIsInstance(doc, dict)
                self.assertEqual(set(doc), {"version", key})
                self.assertIsInstance(doc["version"], str)
                self.assertRegex(doc["version"], VERSION)
                self.assertIsInstance(doc[key], list)
                self.assertTrue(doc[key])

    def test_files_are_nfc(self):
        for name, text in (("agencies.json", self.agencies_text),
                           ("procedures.json", self.procedures_text)):
            with self.subTest(file=name):
                self.assertTrue(unicodedata.is_normalized("NFC", text),
                                "%s is not NFC-normalised" % name)

    # ---- agencies --------------------------------------------------------------

    def test_agency_fields(self):
        for a in self.agencies:
            with self.subTest(agency=a.get("code") if isinstance(a, dict) else a):
                self.assertIsInstance(a, dict)
                self.assertEqual(set(a), AGENCY_FIELDS)
                self.assertIsInstance(a["code"], str)
                self.assertRegex(a["code"], AGENCY_CODE)
                self.assertIsInstance(a["name"], str)
                self.assertTrue(a["name"].strip())
                self.assertIn(a["kind"], KINDS)
                self.assertIsInstance(a["external"], bool)
                self.assertEqual(a["external"], a["kind"] in EXTERNAL_KINDS,
                                 "police, social insurance, tax and other provinces' agencies"
                                 " are external, no one else")
                self.assertTrue(a["parent"] is None or isinstance(a["parent"], str))

    def test_agency_codes_unique(self):
        codes = [a["code"] for a in self.agencies]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        self.assertEqual(dup, [])

    def test_agency_names_unique(self):
        names = [a["name"] for a in self.agencies]
        dup = sorted({n for n in names if names.count(n) > 1})
        self.assertEqual(dup, [])

    def test_agencies_form_a_tree_rooted_at_the_province(self):
        roots = [a for a in self.agencies if a["parent"] is None]
        self.assertEqual(len(roots), 1, "exactly one agency without parent")
        self.assertEqual(roots[0]["kind"], "province")
        self.assertEqual([a for a in self.agencies if a["kind"] == "province"], roots)
        root = roots[0]["code"]
        depth = {}
        for a in self.agencies:
            with self.subTest(agency=a["code"]):
                seen = []
                code = a["code"]
                while code is not None:
                    self.assertIn(code, self.by_code, "unknown parent %s" % code)
                    self.assertNotIn(code, seen, "cycle through %s" % code)
                    seen.append(code)
                    code = self.by_code[code]["parent"]
                self.assertEqual(seen[-1], root)
                depth[a["code"]] = len(seen)
        self.assertGreaterEqual(max(depth.values()), 3, "at least three levels")

    def test_agency_kinds_present(self):
        kinds = {a["kind"] for a in self.agencies}
        self.assertEqual(KINDS - kinds, set())
        top = [a for a in self.agencies if a["parent"] == self.root()]
        self.assertTrue(any(a["kind"] == "one_stop_centre" for a in top),
                        "a provincial one-stop centre under the province")

    def test_every_commune_has_a_one_stop_desk(self):
        communes = [a for a in self.agencies if a["kind"] == "commune"]
        self.assertGreaterEqual(len(communes), 5)
        for c in communes:
            with self.subTest(commune=c["code"]):
                self.assertEqual(c["parent"], self.root())
                self.assertTrue(any(a["parent"] == c["code"] and a["kind"] == "one_stop_centre"
                                    for a in self.agencies))

    def root(self):
        return next(a["code"] for a in self.agencies if a["parent"] is None)

    # ---- procedures ------------------------------------------------------------

    def test_procedure_fields(self):
        for p in self.procedures:
            with self.subTest(procedure=p.get("code") if isinstance(p, dict) else p):
                self.assertIsInstance(p, dict)
                self.assertEqual(set(p), PROCEDURE_FIELDS)
                self.assertIsInstance(p["code"], str)
                self.assertRegex(p["code"], PROCEDURE_CODE)
                self.assertRegex(p["code"], NATIONAL_CODE)
                for key in ("name", "field"):
                    self.assertIsInstance(p[key], str)
                    self.assertTrue(p[key].strip())
                self.assertIn(p["agency"], self.by_code)
                self.assertTrue(is_int(p["level"]))
                self.assertIn(p["level"], (2, 3, 4))
                self.assertTrue(is_int(p["days"]))
                self.assertGreaterEqual(p["days"], 1)
                if p["cutoff"] is not None:
                    self.assertIsInstance(p["cutoff"], str)
                    self.assertRegex(p["cutoff"], CUTOFF)
                self.assertTrue(is_int(p["fee"]))
                self.assertGreaterEqual(p["fee"], 0)

    def test_procedure_codes_unique(self):
        codes = [p["code"] for p in self.procedures]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        self.assertEqual(dup, [])

    def test_documents(self):
        for p in self.procedures:
            with self.subTest(procedure=p["code"]):
                docs = p["documents"]
                self.assertIsInstance(docs, list)
                self.assertTrue(1 <= len(docs) <= 6, "1 to 6 required documents")
                kinds = []
                for d in docs:
                    self.assertIsInstance(d, dict)
                    self.assertEqual(set(d), {"kind", "name"})
                    self.assertIsInstance(d["kind"], str)
                    self.assertRegex(d["kind"], DOC_KIND)
                    self.assertLessEqual(len(d["kind"]), 64)
                    self.assertIsInstance(d["name"], str)
                    self.assertTrue(d["name"].strip())
                    kinds.append(d["kind"])
                self.assertEqual(len(kinds), len(set(kinds)), "document kinds unique")

    def test_return_methods(self):
        for p in self.procedures:
            with self.subTest(procedure=p["code"]):
                rm = p["return_methods"]
                self.assertIsInstance(rm, list)
                self.assertIn("counter", rm)
                self.assertEqual(len(rm), len(set(rm)))
                self.assertEqual(set(rm) - RETURN_METHODS, set())

    def test_steps(self):
        for p in self.procedures:
            with self.subTest(procedure=p["code"]):
                steps = p["steps"]
                self.assertIsInstance(steps, list)
                self.assertTrue(steps)
                for s in steps:
                    self.assertIsInstance(s, dict)
                    self.assertEqual(set(s) - {"procedure"}, {"name", "agency", "days"})
                    if "procedure" in s:  # what another province's motcua runs for it
                        self.assertRegex(s["procedure"], NATIONAL_CODE)
                        self.assertEqual(self.by_code[s["agency"]]["kind"], "peer_province")
                    self.assertIsInstance(s["name"], str)
                    self.assertTrue(s["name"].strip())
                    self.assertIn(s["agency"], self.by_code, "step agency must exist")
                    self.assertTrue(is_number(s["days"]))
                    self.assertGreater(s["days"], 0)
                self.assertAlmostEqual(sum(s["days"] for s in steps), p["days"], delta=0.001)
                self.assertFalse(self.by_code[steps[0]["agency"]]["external"],
                                 "motcua receives the dossier itself")

    def test_counts(self):
        levels = [p["level"] for p in self.procedures]
        self.assertGreaterEqual(len(self.procedures), 25)
        self.assertGreaterEqual(levels.count(4), 8)
        self.assertGreaterEqual(levels.count(3), 10)
        self.assertGreaterEqual(levels.count(2), 1)
        self.assertGreaterEqual(len({p["agency"] for p in self.procedures}), 10,
                                "procedures of many agencies")
        self.assertGreaterEqual(len({p["fee"] for p in self.procedures}), 8,
                                "procedures of many fees")
        self.assertTrue(any(p["fee"] == 0 for p in self.procedures))
        self.assertTrue(any(p["cutoff"] == "15:00" for p in self.procedures),
                        "some procedures state the 15:00 rule")
        self.assertTrue(any(p["cutoff"] is None for p in self.procedures))

    # ---- liên thông (Nghị định 63/2024) -----------------------------------------

    def chain(self, first):
        found = [p for p in self.procedures
                 if p["name"].startswith("Liên thông") and first in p["name"]]
        self.assertEqual(len(found), 1, "one liên thông procedure starting with %s" % first)
        return found[0]

    def check_chain(self, p):
        self.assertEqual(self.by_code[p["agency"]]["kind"], "commune")
        kinds = [self.by_code[s["agency"]]["kind"] for s in p["steps"]]
        self.assertIn("police", kinds)
        self.assertIn("social_insurance", kinds)
        justice = max(i for i, k in enumerate(kinds) if k not in EXTERNAL_KINDS)
        police = kinds.index("police")
        bhxh = kinds.index("social_insurance")
        self.assertLess(justice, police, "civil status first, then the police")
        self.assertLess(police, bhxh, "the police, then social insurance")
        for i in (police, bhxh):
            self.assertTrue(self.by_code[p["steps"][i]["agency"]]["external"])
        self.assertGreaterEqual(p["days"], 3)
        self.assertLessEqual(p["days"], 5)

    def test_chain_birth_residence_health_insurance(self):
        p = self.chain("đăng ký khai sinh")
        self.assertIn("thường trú", p["name"])
        self.assertIn("bảo hiểm y tế", p["name"])
        self.check_chain(p)

    def test_chain_death_deregistration_funeral(self):
        p = self.chain("đăng ký khai tử")
        self.assertIn("xóa đăng ký thường trú", p["name"])
        self.assertIn("mai táng", p["name"])
        self.check_chain(p)

    def test_single_procedures_of_the_chains(self):
        names = {p["name"]: p for p in self.procedures}
        for name, kind in (("Đăng ký khai sinh", "commune"),
                           ("Đăng ký thường trú", "police"),
                           ("Cấp thẻ bảo hiểm y tế cho trẻ em dưới 6 tuổi", "social_insurance"),
                           ("Đăng ký khai tử", "commune"),
                           ("Xóa đăng ký thường trú", "police")):
            with self.subTest(procedure=name):
                self.assertIn(name, names)
                self.assertEqual(self.by_code[names[name]["agency"]]["kind"], kind)
        self.assertTrue(any("tử tuất" in p["name"] and
                            self.by_code[p["agency"]]["kind"] == "social_insurance"
                            for p in self.procedures))

    # ---- language --------------------------------------------------------------

    def texts(self):
        for a in self.agencies:
            yield a["name"]
        for p in self.procedures:
            yield p["name"]
            yield p["field"]
            for d in p["documents"]:
                yield d["name"]
            for s in p["steps"]:
                yield s["name"]

    def test_text_is_nfc(self):
        for t in self.texts():
            with self.subTest(text=t):
                self.assertTrue(unicodedata.is_normalized("NFC", t))

    def test_names_are_vietnamese_with_diacritics(self):
        for t in [a["name"] for a in self.agencies] + [p["name"] for p in self.procedures]:
            with self.subTest(name=t):
                self.assertTrue(any(ord(ch) > 127 for ch in t), "no diacritics in %r" % t)
        every = " ".join(self.texts())
        lower = every.lower()
        for ch in VIETNAMESE_LETTERS:
            self.assertIn(ch, lower)
        marks = {ch for ch in unicodedata.normalize("NFD", every) if ch in TONE_MARKS}
        self.assertEqual(marks, TONE_MARKS, "all five tone marks across the set")

    # ---- the documentation -----------------------------------------------------

    def test_doc_lists_every_agency_and_procedure(self):
        with open(DOC, encoding="utf-8") as f:
            doc = f.read()
        self.assertIn("illustrative", doc)
        for a in self.agencies:
            with self.subTest(agency=a["code"]):
                self.assertIn("`%s`" % a["code"], doc)
        for p in self.procedures:
            with self.subTest(procedure=p["code"]):
                self.assertIn("`%s`" % p["code"], doc)


if __name__ == "__main__":
    unittest.main()
