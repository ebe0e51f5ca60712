# make demo: the whole job on one machine; make demo-stop: stop everything it started.
demo:
	@scripts/deps.sh --if-missing
	@$(MAKE) --no-print-directory -j2 all
	@demo/demo.sh start

demo-stop:
	@demo/demo.sh stop
