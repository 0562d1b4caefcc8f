# Issue 12: layouts, body formats, preview text and the public archive.

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0024_preflight_audit'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField(model_name='campaign', old_name='html_body', new_name='body'),
        # Every existing body is HTML; new campaigns start in rich text.
        migrations.AddField(
            model_name='campaign',
            name='body_format',
            field=models.CharField(choices=[('richtext', 'Rich text'), ('markdown', 'Markdown'), ('html', 'HTML')], default='html', max_length=16, verbose_name='Format'),
        ),
        migrations.AlterField(
            model_name='campaign',
            name='body_format',
            field=models.CharField(choices=[('richtext', 'Rich text'), ('markdown', 'Markdown'), ('html', 'HTML')], default='richtext', max_length=16, verbose_name='Format'),
        ),
        migrations.AddField(
            model_name='campaign',
            name='preheader',
            field=models.CharField(blank=True, help_text='Shown after the subject in most inboxes; hidden in the message itself.', max_length=255, verbose_name='Preview text'),
        ),
        migrations.AddField(
            model_name='campaign',
            name='web_archive',
            field=models.BooleanField(default=False, verbose_name='Publish to the public archive'),
        ),
        migrations.AlterField(
            model_name='campaign',
            name='body',
            field=models.TextField(blank=True, verbose_name='Body'),
        ),
        migrations.AlterField(
            model_name='campaign',
            name='text_body',
            field=models.TextField(blank=True, help_text='Blank: generated from the body when it is sent.', verbose_name='Text body'),
        ),
        migrations.CreateModel(
            name='Layout',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100, unique=True)),
                ('html', models.TextField(help_text='The frame, with {{ content }} exactly once where the body goes. Also: {{ preheader }}, {{ unsubscribe_url }}, {{ web_version_url }}, {{ campaign.name }}, {{ layout.logo_url }}, {{ layout.brand_color }}, {{ layout.legal_address }}, {{ layout.footer_text }}.', verbose_name='HTML')),
                ('logo_url', models.CharField(blank=True, help_text='An https:// address of the logo image; blank: the name in text.', max_length=500, validators=[django.core.validators.URLValidator(schemes=['https', 'http'])], verbose_name='Logo URL')),
                ('brand_color', models.CharField(default='#1f6feb', max_length=7, validators=[django.core.validators.RegexValidator('^#[0-9A-Fa-f]{6}$', 'Write the colour as #RRGGBB.')], verbose_name='Brand colour')),
                ('legal_address', models.TextField(blank=True)),
                ('footer_text', models.TextField(blank=True, help_text='The unsubscribe line. Blank: the default line.')),
                ('version', models.PositiveIntegerField(default=1, editable=False)),
                ('is_default', models.BooleanField(default=False, verbose_name='Default for new campaigns')),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('updated_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='auditentry',
            name='layout',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='audit_entries', to='campaigns.layout'),
        ),
        migrations.AddField(
            model_name='campaign',
            name='layout',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='campaigns', to='campaigns.layout'),
        ),
        migrations.AddConstraint(
            model_name='layout',
            constraint=models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('is_default',), name='layout_one_default'),
        ),
    ]
