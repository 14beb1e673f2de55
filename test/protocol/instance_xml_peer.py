"""slapos.util's dict2xml / xml2dict, driven by the TypeScript tests: for each case, the XML
Python writes for the dict, and the dict Python reads from the XML the TypeScript side wrote."""
import json
import sys

from slapos.util import dict2xml, xml2dict

answers = []
for case in json.load(sys.stdin):
    answers.append({"xml": dict2xml(case["dict"]), "dict": xml2dict(case["xml"])})
json.dump(answers, sys.stdout)
