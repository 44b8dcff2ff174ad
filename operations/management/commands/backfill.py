from operations.management.commands.process_facts import Command as ProcessFacts


class Command(ProcessFacts):
    help = "Phase 3 only: derive and insert the reference rows that fact files need; loads no facts."
    load_facts = False
